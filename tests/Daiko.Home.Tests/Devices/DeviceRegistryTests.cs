using Daiko.Home.Devices;
using Daiko.TestSupport;
using Microsoft.Data.Sqlite;
using Xunit;

namespace Daiko.Home.Tests.Devices;

/// <summary>One-time enrollment codes in a real SQLite file: lifetime, rate limit and what is kept at rest.</summary>
public sealed class DeviceRegistryTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-devices");
    private readonly ManualTime _time = new();
    private readonly DeviceRegistry _registry;

    private sealed class ManualTime : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = new(2026, 12, 1, 9, 0, 0, TimeSpan.Zero);

        public override DateTimeOffset GetUtcNow() => Now;
    }

    public DeviceRegistryTests() => _registry = new DeviceRegistry(Daiko.Home.Storage.HomeStore.Sqlite(DatabasePath), _time);

    private string DatabasePath => Path.Combine(_dir.Path, "home.db");

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _dir.Dispose();
    }

    [Fact]
    public async Task ACode_IsRedeemableFor10Minutes_AndNotASecondLonger()
    {
        var (early, _) = await _registry.AddEnrollmentCodeAsync("phone");
        var (late, expires) = await _registry.AddEnrollmentCodeAsync("tablet");
        Assert.Equal(_time.Now + TimeSpan.FromMinutes(10), expires);

        _time.Now += TimeSpan.FromMinutes(10) - TimeSpan.FromSeconds(1);
        Assert.Equal((EnrollmentOutcome.Enrolled, "phone"), await _registry.RedeemCodeAsync(early));
        _time.Now += TimeSpan.FromSeconds(1);
        Assert.Equal(EnrollmentOutcome.ExpiredCode, (await _registry.RedeemCodeAsync(late)).Outcome);
    }

    [Fact]
    public async Task TenFailuresInAMinute_BlockEvenTheRightCode_UntilTheMinuteHasPassed()
    {
        var (code, _) = await _registry.AddEnrollmentCodeAsync("phone");
        for (var i = 0; i < DeviceRegistry.MaxFailedAttemptsPerMinute; i++)
        {
            Assert.Equal(EnrollmentOutcome.UnknownCode, (await _registry.RedeemCodeAsync($"WRONGCODE{i:000}")).Outcome);
        }
        Assert.Equal(EnrollmentOutcome.TooManyAttempts, (await _registry.RedeemCodeAsync(code)).Outcome);

        _time.Now += TimeSpan.FromMinutes(1) + TimeSpan.FromSeconds(1);
        Assert.Equal((EnrollmentOutcome.Enrolled, "phone"), await _registry.RedeemCodeAsync(code));
    }

    [Fact]
    public async Task ACode_IsKeptOnlyAsASaltedSlowHash()
    {
        var (first, _) = await _registry.AddEnrollmentCodeAsync("phone");
        var (second, _) = await _registry.AddEnrollmentCodeAsync("tablet");

        using (var c = new SqliteConnection($"Data Source={DatabasePath};Mode=ReadOnly;Pooling=False"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "SELECT code_hash, salt FROM enrollment_codes ORDER BY name";
            using var r = cmd.ExecuteReader();
            var rows = new List<(byte[] Hash, byte[] Salt)>();
            while (r.Read()) rows.Add(((byte[])r[0], (byte[])r[1]));
            Assert.Equal(2, rows.Count);
            Assert.All(rows, row => Assert.Equal(32, row.Hash.Length));
            Assert.NotEqual(Convert.ToHexString(rows[0].Salt), Convert.ToHexString(rows[1].Salt));
        }
        // Neither code appears in any file of the store, in any case or encoding the registry would see.
        SqliteConnection.ClearAllPools();
        foreach (var file in Directory.GetFiles(_dir.Path, "home.db*"))
        {
            var bytes = File.ReadAllBytes(file);
            foreach (var code in new[] { first, second })
            {
                foreach (var form in new[] { code, code.ToLowerInvariant(), Daiko.Protocol.EnrollmentCode.Normalize(code) })
                {
                    Assert.True(bytes.AsSpan().IndexOf(System.Text.Encoding.ASCII.GetBytes(form)) < 0, $"{Path.GetFileName(file)} holds an enrollment code in clear");
                }
            }
        }
    }
}
