using Daiko.Home.Devices;
using Daiko.TestSupport;
using Microsoft.Data.Sqlite;
using Xunit;

namespace Daiko.Home.Tests.Devices;

/// <summary>One-time enrollment codes in a real SQLite file: lifetime, lookup by public id, old codes, limits and what is kept at rest.</summary>
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

    public DeviceRegistryTests() => _registry = new DeviceRegistry(DatabasePath, _time);

    private string DatabasePath => Path.Combine(_dir.Path, "home.db");

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _dir.Dispose();
    }

    [Fact]
    public void ACode_IsRedeemableFor10Minutes_AndNotASecondLonger()
    {
        var (early, _) = _registry.AddEnrollmentCode("phone");
        var (late, expires) = _registry.AddEnrollmentCode("tablet");
        Assert.Equal(_time.Now + TimeSpan.FromMinutes(10), expires);

        _time.Now += TimeSpan.FromMinutes(10) - TimeSpan.FromSeconds(1);
        Assert.Equal((EnrollmentOutcome.Enrolled, "phone"), _registry.RedeemCode(early));
        _time.Now += TimeSpan.FromSeconds(1);
        Assert.Equal(EnrollmentOutcome.ExpiredCode, _registry.RedeemCode(late).Outcome);
    }

    [Fact]
    public void ACode_IsFoundByItsPublicId_AndAWrongSecretUnderAKnownIdIsTold()
    {
        var (code, _) = _registry.AddEnrollmentCode("phone");
        Assert.Equal(16, code.Length);
        var wrongSecret = code[..4] + new string(code[4..].Select(c => c == '0' ? '1' : '0').ToArray());

        Assert.Equal(EnrollmentOutcome.WrongSecret, _registry.RedeemCode(wrongSecret).Outcome);
        Assert.Equal(EnrollmentOutcome.UnknownCode, _registry.RedeemCode((code[0] == 'Z' ? "Y" : "Z") + code[1..]).Outcome);
        Assert.Equal(EnrollmentOutcome.UnknownCode, _registry.RedeemCode("SHORT").Outcome);
        Assert.Equal((EnrollmentOutcome.Enrolled, "phone"), _registry.RedeemCode(code));
        Assert.Equal(EnrollmentOutcome.UsedCode, _registry.RedeemCode(code).Outcome);
    }

    [Fact]
    public void ACodeFromBeforeThePublicId_StillEnrolls()
    {
        // An old store: the code row has no public id and the terminal sends the 12-character secret alone.
        const string oldSecret = "7K3M9QRT5VWX";
        var salt = new byte[16];
        System.Security.Cryptography.RandomNumberGenerator.Fill(salt);
        var hash = System.Security.Cryptography.Rfc2898DeriveBytes.Pbkdf2(System.Text.Encoding.ASCII.GetBytes(oldSecret), salt, 100_000, System.Security.Cryptography.HashAlgorithmName.SHA256, 32);
        using (var c = new SqliteConnection($"Data Source={DatabasePath};Pooling=False"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "INSERT INTO enrollment_codes(name, code_hash, salt, expires_at, used) VALUES('old-phone', $h, $s, $e, 0)";
            cmd.Parameters.AddWithValue("$h", hash);
            cmd.Parameters.AddWithValue("$s", salt);
            cmd.Parameters.AddWithValue("$e", (_time.Now + TimeSpan.FromMinutes(5)).ToString("O"));
            cmd.ExecuteNonQuery();
        }
        var old = Daiko.Protocol.EnrollmentCode.Compose(oldSecret, new byte[32]);
        Assert.Equal(oldSecret, Daiko.Protocol.EnrollmentCode.Split(old).Secret);

        Assert.Equal((EnrollmentOutcome.Enrolled, "old-phone"), _registry.RedeemCode(oldSecret));
    }

    [Fact]
    public void Failures_AreCountedPerAddressAndPerCode_WithBackoff_AndOneAddressNeverHoldsBackAnother()
    {
        var limiter = new EnrollmentLimiter(_time);
        var stranger = EnrollmentLimiter.AddressKey(System.Net.IPAddress.Parse("127.0.0.2"));
        var owner = EnrollmentLimiter.AddressKey(System.Net.IPAddress.Parse("127.0.0.3"));
        for (var i = 0; i < EnrollmentLimiter.FreeFailures; i++)
        {
            Assert.Null(limiter.WaitFor(stranger));
            limiter.Failed(stranger);
        }
        Assert.Equal(TimeSpan.FromSeconds(1), limiter.WaitFor(stranger));
        Assert.Null(limiter.WaitFor(owner));
        _time.Now += TimeSpan.FromSeconds(1);
        Assert.Null(limiter.WaitFor(stranger));
        limiter.Failed(stranger);
        Assert.Equal(TimeSpan.FromSeconds(2), limiter.WaitFor(stranger));
        for (var i = 0; i < 30; i++) limiter.Failed(stranger);
        Assert.Equal(EnrollmentLimiter.MaxWait, limiter.WaitFor(stranger));
        Assert.Null(limiter.WaitFor(owner));
        Assert.Null(limiter.WaitFor(EnrollmentLimiter.CodeKey("ABCD")));
        // IPv6 addresses are counted by their /64: a stranger cannot step through its own prefix.
        Assert.Equal(EnrollmentLimiter.AddressKey(System.Net.IPAddress.Parse("2001:db8::1")), EnrollmentLimiter.AddressKey(System.Net.IPAddress.Parse("2001:db8::ffff")));
        _time.Now += EnrollmentLimiter.ForgetAfter;
        Assert.Null(limiter.WaitFor(stranger));
    }

    [Fact]
    public void ACode_IsKeptOnlyAsASaltedSlowHash()
    {
        var (first, _) = _registry.AddEnrollmentCode("phone");
        var (second, _) = _registry.AddEnrollmentCode("tablet");

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
                foreach (var form in new[] { code, code.ToLowerInvariant(), Daiko.Protocol.EnrollmentCode.Normalize(code), code[4..] })
                {
                    Assert.True(bytes.AsSpan().IndexOf(System.Text.Encoding.ASCII.GetBytes(form)) < 0, $"{Path.GetFileName(file)} holds an enrollment code in clear");
                }
            }
        }
    }
}
