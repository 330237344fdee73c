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
    private readonly Daiko.Home.Storage.HomeStore _store;
    private readonly DeviceRegistry _registry;

    private sealed class ManualTime : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = new(2026, 12, 1, 9, 0, 0, TimeSpan.Zero);

        public override DateTimeOffset GetUtcNow() => Now;
    }

    public DeviceRegistryTests()
    {
        _store = Daiko.Home.Storage.HomeStore.Sqlite(DatabasePath);
        _registry = new DeviceRegistry(_store, _time);
    }

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
    public async Task ACode_IsFoundByItsPublicId_AndAWrongSecretUnderAKnownIdIsTold()
    {
        var (code, _) = await _registry.AddEnrollmentCodeAsync("phone");
        Assert.Equal(16, code.Length);
        var wrongSecret = code[..4] + new string(code[4..].Select(c => c == '0' ? '1' : '0').ToArray());

        Assert.Equal(EnrollmentOutcome.WrongSecret, (await _registry.RedeemCodeAsync(wrongSecret)).Outcome);
        Assert.Equal(EnrollmentOutcome.UnknownCode, (await _registry.RedeemCodeAsync((code[0] == 'Z' ? "Y" : "Z") + code[1..])).Outcome);
        Assert.Equal(EnrollmentOutcome.UnknownCode, (await _registry.RedeemCodeAsync("SHORT")).Outcome);
        Assert.Equal((EnrollmentOutcome.Enrolled, "phone"), await _registry.RedeemCodeAsync(code));
        Assert.Equal(EnrollmentOutcome.UsedCode, (await _registry.RedeemCodeAsync(code)).Outcome);
    }

    [Fact]
    public async Task ACodeReplacedByANewerOne_IsToldSo_OnlyToItsRightSecret_AndTheNewerOneEnrolls()
    {
        var (first, _) = await _registry.AddEnrollmentCodeAsync("phone");
        Assert.Equal("phone", (await _registry.PendingAsync("phone"))?.Name);
        var (second, _) = await _registry.AddEnrollmentCodeAsync("phone");
        var wrongSecret = first[..4] + new string(first[4..].Select(c => c == '0' ? '1' : '0').ToArray());

        Assert.Equal(EnrollmentOutcome.ReplacedCode, (await _registry.RedeemCodeAsync(first)).Outcome);
        // A wrong secret under the replaced code's id reads as any unknown code does: no name, no reason.
        Assert.Equal((EnrollmentOutcome.UnknownCode, null), await _registry.RedeemCodeAsync(wrongSecret));
        Assert.Equal(["phone"], (await _registry.PendingAsync()).Select(p => p.Name));
        _time.Now += DeviceRegistry.CodeLifetime;
        Assert.Equal(EnrollmentOutcome.ExpiredCode, (await _registry.RedeemCodeAsync(first)).Outcome);
        Assert.Empty(await _registry.PendingAsync());

        var (third, _) = await _registry.AddEnrollmentCodeAsync("phone");
        Assert.Equal((EnrollmentOutcome.Enrolled, "phone"), await _registry.RedeemCodeAsync(third));
        Assert.Empty(await _registry.PendingAsync());
        Assert.NotEqual(first, second);
    }

    [Theory]
    [InlineData("phone", true)]
    [InlineData("till-2", true)]
    [InlineData("nobody's laptop", true)]
    [InlineData("", false)]
    [InlineData(" phone", false)]
    [InlineData("phone ", false)]
    [InlineData("bad name/with slash", false)]
    [InlineData("back\\slash", false)]
    [InlineData("two\nlines", false)]
    [InlineData("carriage\rreturn", false)]
    [InlineData("tab\tbed", false)]
    [InlineData("line\u2028separator", false)]
    public async Task ADeviceName_IsRefusedWithWhatIsAllowed_UnlessItIsPlain(string name, bool allowed)
    {
        Assert.Equal(allowed, DeviceName.Problem(name) is null);
        if (allowed)
        {
            await _registry.AddEnrollmentCodeAsync(name);
            return;
        }
        var refused = await Assert.ThrowsAsync<ArgumentException>(() => _registry.AddEnrollmentCodeAsync(name));
        Assert.Equal(DeviceName.Rule, refused.Message);
        Assert.Empty(await _registry.PendingAsync());
    }

    [Fact]
    public void ADeviceName_IsAtMost64Characters() =>
        Assert.Equal([true, false], new[] { new string('x', 64), new string('x', 65) }.Select(n => DeviceName.Problem(n) is null));

    [Fact]
    public async Task ACodeFromBeforeThePublicId_StillEnrolls()
    {
        // An old store: the code row has no public id and the terminal sends the 12-character secret alone.
        const string oldSecret = "7K3M9QRT5VWX";
        var salt = new byte[16];
        System.Security.Cryptography.RandomNumberGenerator.Fill(salt);
        var hash = System.Security.Cryptography.Rfc2898DeriveBytes.Pbkdf2(System.Text.Encoding.ASCII.GetBytes(oldSecret), salt, 100_000, System.Security.Cryptography.HashAlgorithmName.SHA256, 32);
        await _store.EnrollmentCodes.PutAsync(new Daiko.Home.Storage.EnrollmentCodeRecord("old-phone", hash, salt, _time.Now + TimeSpan.FromMinutes(5), Used: false));
        var old = Daiko.Protocol.EnrollmentCode.Compose(oldSecret, new byte[32]);
        Assert.Equal(oldSecret, Daiko.Protocol.EnrollmentCode.Split(old).Secret);

        Assert.Equal((EnrollmentOutcome.Enrolled, "old-phone"), await _registry.RedeemCodeAsync(oldSecret));
    }

    [Fact]
    public async Task WrongCodesSentAllAtOnce_AreHashedOnlyUpToTheFreeFailures_TheRestRefusedUnlooked()
    {
        // Spent and live codes from before the public id, the rows an old code is compared with one by one.
        var salt = new byte[16];
        var hash = System.Security.Cryptography.Rfc2898DeriveBytes.Pbkdf2("7K3M9QRT5VWX"u8.ToArray(), salt, 100_000, System.Security.Cryptography.HashAlgorithmName.SHA256, 32);
        for (var i = 0; i < 3; i++) await _store.EnrollmentCodes.PutAsync(new Daiko.Home.Storage.EnrollmentCodeRecord($"old-{i}", hash, salt, _time.Now + TimeSpan.FromMinutes(5), Used: i > 0));
        using var identity = Daiko.Home.Trust.HomeIdentity.LoadOrCreate(Path.Combine(_dir.Path, "identity"));
        var handler = new Daiko.Home.Handlers.EnrollmentHandler(_registry, identity, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, new EnrollmentLimiter(_time));
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var from = System.Net.IPAddress.Parse("192.0.2.7");

        // As many threads as requests, as a machine with many cores would give them: all arrive before any failed.
        ThreadPool.GetMinThreads(out var workers, out var ports);
        ThreadPool.SetMinThreads(Math.Max(workers, 48), ports);
        Daiko.Home.Handlers.HandlerResult[] replies;
        try
        {
            using var start = new Barrier(40);
            replies = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => Task.Run(() =>
            {
                start.SignalAndWait(TimeSpan.FromSeconds(10));
                return handler.EnrollAsync(new Daiko.Protocol.Messages.EnrollRequest("ABCDEFGHJKMN", key.ExportSubjectPublicKeyInfo()), from, CancellationToken.None);
            })));
        }
        finally
        {
            ThreadPool.SetMinThreads(workers, ports);
        }

        var messages = replies.Select(r => Assert.IsType<Daiko.Protocol.Messages.ErrorReply>(r.Reply).Message).ToList();
        Assert.Equal(EnrollmentLimiter.FreeFailures, messages.Count(m => !m.Contains("too many wrong enrollment codes from this address", StringComparison.Ordinal)));
        // The live old code still enrolls from another address.
        Assert.Equal((EnrollmentOutcome.Enrolled, "old-0"), await _registry.RedeemCodeAsync("7K3M9QRT5VWX"));
    }

    [Fact]
    public void Failures_AreCountedPerAddress_WithBackoff_AndOneAddressNeverHoldsBackAnother()
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
        // IPv6 addresses are counted by their /64: a stranger cannot step through its own prefix.
        Assert.Equal(EnrollmentLimiter.AddressKey(System.Net.IPAddress.Parse("2001:db8::1")), EnrollmentLimiter.AddressKey(System.Net.IPAddress.Parse("2001:db8::ffff")));
        _time.Now += EnrollmentLimiter.ForgetAfter;
        Assert.Null(limiter.WaitFor(stranger));
    }

    [Fact]
    public async Task WrongSecretsForAKnownCode_FromManyAddresses_NeverKeepTheCorrectCodeOut()
    {
        // A stranger who found a pending code's public id (4 characters) tries wrong secrets under it from address after
        // address: each address is held back, the code is not, and the owner's terminal enrolls with it at once.
        var (code, _) = await _registry.AddEnrollmentCodeAsync("phone");
        var wrongSecret = code[..4] + new string(code[4..].Select(c => c == '0' ? '1' : '0').ToArray());
        using var identity = Daiko.Home.Trust.HomeIdentity.LoadOrCreate(Path.Combine(_dir.Path, "identity"));
        var handler = new Daiko.Home.Handlers.EnrollmentHandler(_registry, identity, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, new EnrollmentLimiter(_time));
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        for (var address = 1; address <= 4; address++)
        {
            for (var i = 0; i < EnrollmentLimiter.FreeFailures; i++)
            {
                var refused = Assert.IsType<Daiko.Protocol.Messages.ErrorReply>((await handler.EnrollAsync(new Daiko.Protocol.Messages.EnrollRequest(wrongSecret, key.ExportSubjectPublicKeyInfo()), System.Net.IPAddress.Parse($"192.0.2.{address}"), CancellationToken.None)).Reply);
                Assert.Equal("the enrollment code is not valid", refused.Message);
            }
        }

        var enrolled = await handler.EnrollAsync(new Daiko.Protocol.Messages.EnrollRequest(code, key.ExportSubjectPublicKeyInfo()), System.Net.IPAddress.Parse("198.51.100.9"), CancellationToken.None);

        Assert.Equal("phone", Assert.IsType<Daiko.Protocol.Messages.EnrolledReply>(enrolled.Reply).Name);
    }

    [Fact]
    public void TheLimiter_StaysWithinItsKeys_UnderAFloodFromEverNewAddresses_AndStillHoldsEachOneBack()
    {
        var limiter = new EnrollmentLimiter(_time);
        // Keys below the free failures wait nothing, however often they are looked at.
        var once = EnrollmentLimiter.AddressKey(System.Net.IPAddress.Parse("203.0.113.1"));
        for (var i = 0; i < EnrollmentLimiter.FreeFailures - 1; i++) limiter.Failed(once);
        Assert.Null(limiter.WaitFor(once));
        // More addresses than the table keeps, each past its free failures: the oldest go, the newest are held back.
        for (var n = 0; n < EnrollmentLimiter.MaxKeys + 50; n++)
        {
            var key = $"address 2001:db8:{n >> 16:x}:{n & 0xffff:x}::/64";
            for (var i = 0; i < EnrollmentLimiter.FreeFailures; i++) limiter.Failed(key);
        }
        Assert.True(limiter.Count <= EnrollmentLimiter.MaxKeys, $"{limiter.Count} keys kept");
        var newest = $"address 2001:db8:{(EnrollmentLimiter.MaxKeys + 49) >> 16:x}:{(EnrollmentLimiter.MaxKeys + 49) & 0xffff:x}::/64";
        Assert.Equal(TimeSpan.FromSeconds(1), limiter.WaitFor(newest));
    }

    [Fact]
    public void StrangersRefusals_AreWrittenOnceASourceAMinute_AndFewInAll_EachLineCountingThoseNotWritten()
    {
        var refusals = new StrangerRefusals(_time);
        var flooder = EnrollmentLimiter.AddressKey(System.Net.IPAddress.Parse("2001:db8::1"));

        Assert.Equal((true, 0), refusals.Note(flooder));
        for (var i = 0; i < 500; i++) Assert.False(refusals.Note(EnrollmentLimiter.AddressKey(System.Net.IPAddress.Parse($"2001:db8::{i + 2:x}"))).Write);
        Assert.Equal((true, 0), refusals.Note("address 192.0.2.1"));
        _time.Now += StrangerRefusals.Window;
        Assert.Equal((true, 500), refusals.Note(flooder));

        // Many sources: the window's lines run out, and what was not written is counted on the next line.
        for (var i = 0; i < StrangerRefusals.MaxLinesPerWindow - 1; i++) Assert.True(refusals.Note($"address 198.51.100.{i}").Write);
        Assert.False(refusals.Note("address 203.0.113.1").Write);
        Assert.False(refusals.Note("address 203.0.113.2").Write);
        _time.Now += StrangerRefusals.Window;
        Assert.Equal((true, 2), refusals.Note("address 203.0.113.3"));
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
                foreach (var form in new[] { code, code.ToLowerInvariant(), Daiko.Protocol.EnrollmentCode.Normalize(code), code[4..] })
                {
                    Assert.True(bytes.AsSpan().IndexOf(System.Text.Encoding.ASCII.GetBytes(form)) < 0, $"{Path.GetFileName(file)} holds an enrollment code in clear");
                }
            }
        }
    }
}
