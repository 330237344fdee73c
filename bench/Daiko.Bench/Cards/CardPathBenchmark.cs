using System.Diagnostics;
using System.Security.Cryptography;
using Daiko.Cards;
using Daiko.Cards.Diagnostics;
using Daiko.TestSupport;
using Daiko.Tls;

namespace Daiko.Bench.Cards;

/// <summary>
/// The home card on the path of every delegation, each pair in interleaved one-second slices on one
/// card so that both see the same machine. Touch (the idle clock's reset): <c>deferred</c>, the card as
/// it is (the state file is rewritten only when its deadline lags by a second or more), against
/// <c>written</c>, the same card on a clock that moves two seconds between touches so that every
/// touch rewrites the file durably (locked read, temp file, fsync, rename, directory fsync), as every
/// touch did before. Signing: CertificateVerify content through the card (content check, state
/// machine, DER) against raw C_Sign on the same token; and the card's signatures one at a time against
/// two at once (its signing sessions). <c>[--seconds N]</c> (default 6).
/// </summary>
public static class CardPathBenchmark
{
    public static async Task<int> RunAsync(string[] args)
    {
        var i = Array.IndexOf(args, "--seconds");
        var seconds = i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture) : 6;
        using var dir = new TempDirectory("daiko-bench-card");
        var clock = new SteppingClock();
        using var card = HomeCard.Initialize(new HomeCardOptions(dir.Path) { Time = clock, IdleTimeout = TimeSpan.FromDays(3650) }, HomeCardKeyType.P256, "1111", "2222", "admin-code-123");
        card.EnterPin1("1111");
        card.EnterPin2("2222");
        byte[] content = [.. Enumerable.Repeat((byte)0x20, 64), .. "TLS 1.3, client CertificateVerify"u8, 0, .. RandomNumberGenerator.GetBytes(32)];
        var raw = card.RawTokenSigner("2222");
        var hash = SHA256.HashData(content);

        var touch = await Interleaved(seconds,
            ("deferred", () => { clock.Advance(TimeSpan.FromTicks(1)); card.Touch(); return Task.CompletedTask; }),
            ("written", () => { clock.Advance(TimeSpan.FromSeconds(2)); card.Touch(); return Task.CompletedTask; }));
        var sign = await Interleaved(seconds,
            ("card", async () => await card.TlsSigner.SignAsync(SignatureScheme.EcdsaSecp256r1Sha256, content, CancellationToken.None)),
            ("raw", () => { raw(hash); return Task.CompletedTask; }));

        // Two signatures at once, each on a thread of its own: the card's signing sessions let both cores sign.
        Task SignOnce() => card.TlsSigner.SignAsync(SignatureScheme.EcdsaSecp256r1Sha256, content, CancellationToken.None).AsTask();
        var pairs = await Interleaved(seconds,
            ("one at a time", SignOnce),
            ("two at once", () => Task.WhenAll(Task.Run(SignOnce), Task.Run(SignOnce))));

        Console.WriteLine(FormattableString.Invariant(
            $"home-card idle-clock resets (Touch), {seconds} interleaved one-second slices each: deferred {touch[0]:0}/s ({1e6 / touch[0]:0.0} µs each); written every time {touch[1]:0}/s ({1e6 / touch[1]:0.0} µs each); ratio {touch[0] / touch[1]:0.0}"));
        Console.WriteLine(FormattableString.Invariant(
            $"ECDSA P-256 CertificateVerify signatures through the home card, interleaved with raw C_Sign on the same SoftHSM2 token: card {sign[0]:0}/s, raw {sign[1]:0}/s; ratio {sign[0] / sign[1]:0.00}"));
        Console.WriteLine(FormattableString.Invariant(
            $"the same signatures, one at a time against two at once ({Environment.ProcessorCount} cores, load average {File.ReadAllText("/proc/loadavg")[..14].Trim()}): {pairs[0]:0}/s against {2 * pairs[1]:0}/s; ratio {2 * pairs[1] / pairs[0]:0.00}"));
        return 0;
    }

    private static async Task<double[]> Interleaved(int seconds, params (string Name, Func<Task> Once)[] ways)
    {
        var counts = new long[ways.Length];
        var walls = new TimeSpan[ways.Length];
        for (var slice = 0; slice <= seconds; slice++)
        {
            for (var w = 0; w < ways.Length; w++)
            {
                var wall = Stopwatch.StartNew();
                var count = 0L;
                while (wall.Elapsed < TimeSpan.FromSeconds(1))
                {
                    await ways[w].Once();
                    count++;
                }
                if (slice == 0) continue; // warm-up
                counts[w] += count;
                walls[w] += wall.Elapsed;
            }
        }
        return [.. counts.Select((c, w) => c / walls[w].TotalSeconds)];
    }

    private sealed class SteppingClock : TimeProvider
    {
        private DateTimeOffset _now = DateTimeOffset.UtcNow;

        public void Advance(TimeSpan step) => _now += step;

        public override DateTimeOffset GetUtcNow() => _now;
    }
}
