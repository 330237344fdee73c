using Daiko.Home.Web;
using Daiko.TestSupport;
using Microsoft.AspNetCore.Http;

namespace Daiko.Web.Tests;

/// <summary>The console's owner sessions, on a clock the test moves.</summary>
public sealed class ConsoleSessionsTests
{
    private readonly ManualClock _clock = new(new DateTimeOffset(2026, 12, 7, 9, 0, 0, TimeSpan.Zero));

    [Fact]
    public void ASessionUsedWithinItsIdleTime_SlidesOn_ButEndsTwelveHoursAfterTheLogin()
    {
        var sessions = new ConsoleSessions(_clock, () => TimeSpan.FromMinutes(30));
        var cookie = CookieOf(sessions);

        // Used every 29 minutes: alive for 11 h 36 min ...
        for (var i = 0; i < 24; i++)
        {
            _clock.Now += TimeSpan.FromMinutes(29);
            Assert.NotNull(sessions.Find(RequestWith(cookie)));
        }
        // ... and never past 12 h from the login, however it is used.
        _clock.Now += TimeSpan.FromMinutes(24);
        Assert.Null(sessions.Find(RequestWith(cookie)));
        Assert.Equal(0, sessions.Count);
    }

    [Fact]
    public void ASessionLeftIdle_Lapses_AndIsForgottenAtTheNextLogin()
    {
        var sessions = new ConsoleSessions(_clock, () => TimeSpan.FromMinutes(30));
        var first = CookieOf(sessions);
        _clock.Now += TimeSpan.FromMinutes(31);

        var second = CookieOf(sessions);

        Assert.Equal(1, sessions.Count);
        Assert.Null(sessions.Find(RequestWith(first)));
        Assert.NotNull(sessions.Find(RequestWith(second)));
    }

    /// <summary>Logs in and returns the session cookie's value the response set.</summary>
    private static string CookieOf(ConsoleSessions sessions)
    {
        var login = new DefaultHttpContext();
        sessions.Start(login);
        var set = login.Response.Headers.SetCookie.ToString();
        Assert.StartsWith(ConsoleSessions.CookieName + "=", set, StringComparison.Ordinal);
        return set[(ConsoleSessions.CookieName.Length + 1)..set.IndexOf(';', StringComparison.Ordinal)];
    }

    private static DefaultHttpContext RequestWith(string cookie)
    {
        var context = new DefaultHttpContext();
        context.Request.Headers.Cookie = $"{ConsoleSessions.CookieName}={cookie}";
        return context;
    }
}
