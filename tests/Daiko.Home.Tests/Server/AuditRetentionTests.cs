using Daiko.Home.Hosting;
using Daiko.Home.Storage;
using Xunit;

namespace Daiko.Home.Tests.Server;

/// <summary>The running home server keeps its audit log within the owner's retention, and says when it pruned.</summary>
[Collection("home card")]
public sealed class AuditRetentionTests
{
    [Fact]
    public async Task TheServer_PrunesTheAuditLogToItsRetention_KeepingTheNewest_AndAuditsThatItDid()
    {
        var now = DateTimeOffset.UtcNow;
        // At most five lines; no age removes the newest eight.
        var retention = new AuditRetention(Days: 365, MaxLines: 5) { KeepNewest = 8, FirstAfter = TimeSpan.FromMilliseconds(100), Every = TimeSpan.FromHours(1) };
        await using var home = HomeFixture.Start(o =>
        {
            // A log from before this start: three lines older than a year, then seven recent ones.
            var audit = HomeStore.Sqlite(HomeServer.DatabasePath(o.Directory)).Audit;
            for (var i = 0; i < 10; i++)
                audit.AppendAsync(new AuditEntry(i < 3 ? now.AddDays(-400 + i) : now.AddMinutes(-10 + i), "dev", "delegate", null, null, $"n{i}")).GetAwaiter().GetResult();
            return o with { AuditRetention = retention };
        });

        IReadOnlyList<AuditEntry> log = [];
        for (var i = 0; i < 400 && !log.Any(e => e.Action == "audit-pruned"); i++)
        {
            await Task.Delay(25);
            log = await home.Server.Devices.AuditLogAsync(100);
        }

        // Beyond the newest five: the three too old, and two recent ones, said to have gone before their time.
        Assert.Equal(["audit-pruned", "delegate", "delegate", "delegate", "delegate", "delegate"], log.Select(e => e.Action));
        Assert.Equal("5 line(s) removed: older than 365 day(s), or beyond the newest 5; 2 of them younger than 365 day(s): the log is at its line limit", log[0].Outcome);
        Assert.Equal(["n9", "n8", "n7", "n6", "n5"], log.Skip(1).Select(e => e.Outcome));
    }
}
