using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;

namespace Daiko.Home.Web;

/// <summary>One owner login: its CSRF token (every form carries it), when it began and when it lapses.</summary>
public sealed class ConsoleSession(string csrf, DateTimeOffset started, DateTimeOffset expires)
{
    public string Csrf { get; } = csrf;

    public DateTimeOffset Started { get; } = started;

    public DateTimeOffset Expires { get; set; } = expires;
}

/// <summary>
/// Owner sessions of the console, in memory only (a restart logs everyone out). The cookie carries a
/// random 256-bit id; the server keeps only its hash. Sessions slide on use and lapse after the idle
/// time in home.json, and end <see cref="MaxAge"/> after the login however much they are used (a cookie that
/// leaked cannot be kept alive by using it). Every POST must carry the session's CSRF token (the synchronizer-token pattern);
/// the cookie is also SameSite=Strict and HttpOnly, and Secure when the console runs over TLS.
/// </summary>
public sealed class ConsoleSessions(TimeProvider time, Func<TimeSpan> idle)
{
    public const string CookieName = "daiko_console";
    public const string CsrfField = "csrf";

    private readonly ConcurrentDictionary<string, ConsoleSession> _sessions = new();

    /// <summary>The longest a login lasts, used or not: then the owner asks for a new login link.</summary>
    public static readonly TimeSpan MaxAge = TimeSpan.FromHours(12);

    public int Count => _sessions.Count;

    /// <summary>Starts a session and sets its cookie (and forgets sessions that lapsed unseen).</summary>
    public ConsoleSession Start(HttpContext context)
    {
        var now = time.GetUtcNow();
        foreach (var (key, lapsed) in _sessions)
        {
            if (!Live(lapsed, now)) _sessions.TryRemove(key, out _);
        }
        var id = ConsoleLinks.Base64Url(RandomNumberGenerator.GetBytes(32));
        var session = new ConsoleSession(ConsoleLinks.Base64Url(RandomNumberGenerator.GetBytes(32)), now, Expiry(now, now));
        _sessions[Hash(id)] = session;
        context.Response.Cookies.Append(CookieName, id, new CookieOptions
        {
            HttpOnly = true, SameSite = SameSiteMode.Strict, Secure = context.Request.IsHttps, Path = "/", IsEssential = true,
        });
        return session;
    }

    /// <summary>The request's live session (and slides its expiry), or null.</summary>
    public ConsoleSession? Find(HttpContext context)
    {
        if (!context.Request.Cookies.TryGetValue(CookieName, out var id) || id is null or { Length: > 64 }) return null;
        var key = Hash(id);
        if (!_sessions.TryGetValue(key, out var session)) return null;
        var now = time.GetUtcNow();
        if (!Live(session, now))
        {
            _sessions.TryRemove(key, out _);
            return null;
        }
        session.Expires = Expiry(session.Started, now);
        return session;
    }

    private static bool Live(ConsoleSession session, DateTimeOffset now) => session.Expires > now;

    /// <summary>The idle time from <paramref name="now"/>, but never past <see cref="MaxAge"/> from the login.</summary>
    private DateTimeOffset Expiry(DateTimeOffset started, DateTimeOffset now)
    {
        var idleEnd = now + idle();
        var ageEnd = started + MaxAge;
        return idleEnd < ageEnd ? idleEnd : ageEnd;
    }

    public void End(HttpContext context)
    {
        if (context.Request.Cookies.TryGetValue(CookieName, out var id) && id is not null) _sessions.TryRemove(Hash(id), out _);
        context.Response.Cookies.Delete(CookieName, new CookieOptions { Path = "/", Secure = context.Request.IsHttps, HttpOnly = true, SameSite = SameSiteMode.Strict });
    }

    /// <summary>Whether a posted form carries this session's CSRF token.</summary>
    public static bool CsrfMatches(ConsoleSession session, string? posted) =>
        posted is not null && CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(posted), Encoding.ASCII.GetBytes(session.Csrf));

    private static string Hash(string id) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(id)));
}
