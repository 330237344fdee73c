using System.Diagnostics;
using System.Runtime.InteropServices;
using NSec.Cryptography;

namespace Daiko.Cards.Access;

/// <summary>
/// Argon2id parameters for a file-backed access card: memory in KiB and passes (parallelism 1, as
/// libsodium requires). The product always calibrates them at enrollment (<see cref="Calibrate"/>) so
/// that one guess costs at least <see cref="Target"/> on the terminal; the parameters are stored in the
/// key file, and unlocking reads them back from there.
/// </summary>
internal sealed record AccessCardKdf(int MemoryKiB, int Passes)
{
    public const int Parallelism = 1;

    public const int SaltLength = 16;

    public const int KeyLength = 32;

    /// <summary>The least time one guess must take on the enrolling terminal.</summary>
    public static readonly TimeSpan Target = TimeSpan.FromSeconds(0.5);

    /// <summary>64 MiB: large enough that a GPU or ASIC gains little per guess.</summary>
    public const int DefaultMemoryKiB = 64 * 1024;

    /// <summary>
    /// TEST-ONLY parameters (8 MiB, one pass, a few milliseconds a guess): unit tests pass them
    /// explicitly so the suite stays fast; the product never uses them — every enrollment, migration and
    /// PIN change it makes calibrates.
    /// </summary>
    internal static AccessCardKdf ForTests { get; } = new(8 * 1024, 1);

    public byte[] DeriveKey(string pin, ReadOnlySpan<byte> salt)
    {
        var parameters = new Argon2Parameters { DegreeOfParallelism = Parallelism, MemorySize = MemoryKiB, NumberOfPasses = Passes };
        return PasswordBasedKeyDerivationAlgorithm.Argon2id(in parameters).DeriveBytes(pin, salt, KeyLength);
    }

    /// <summary>
    /// Finds parameters for which one derivation takes at least <paramref name="target"/> of CPU time
    /// here: 64 MiB, and as many passes as reach the target. A derivation's cost is a fixed part (taking
    /// the memory) and the same work again for each pass, so both are read from the fastest of three
    /// derivations at one pass and at two (CPU time and the fastest, so that a busy machine does not make
    /// the cost look higher than it is; tens of milliseconds each), the passes are chosen with a tenth to
    /// spare, and one derivation with them must then reach the target; if it does not, the passes are
    /// raised from what it took. Measuring the chosen passes three times over would cost three targets'
    /// time for a check that a tenth to spare already makes.
    /// </summary>
    public static AccessCardKdf Calibrate(TimeSpan? target = null)
    {
        var goal = target ?? Target;
        var salt = new byte[SaltLength];
        var one = new AccessCardKdf(DefaultMemoryKiB, 1);
        var onePass = Fastest(one, salt);
        if (onePass >= goal) return one;
        var twoPasses = Fastest(one with { Passes = 2 }, salt);
        // Noise between the two readings is kept within reason: a pass costs at most what one pass and the memory cost
        // together, and at least a quarter of that (a reading of nearly nothing would choose the most passes).
        var perPass = Math.Clamp((twoPasses - onePass).TotalSeconds, onePass.TotalSeconds / 4, onePass.TotalSeconds);
        var fixedPart = Math.Max(onePass.TotalSeconds - perPass, 0);
        var candidate = one with { Passes = PassesFor(goal.TotalSeconds * 1.1, fixedPart, perPass) };
        for (var round = 0; round < 12; round++)
        {
            var start = ThreadCpuTime.Now();
            candidate.DeriveKey("calibration", salt);
            var spent = (ThreadCpuTime.Now() - start).TotalSeconds;
            if (spent >= goal.TotalSeconds || candidate.Passes == MaxPasses) return candidate;
            // Short of the target: a pass costs more than the two readings said; read it from this derivation.
            if (spent > fixedPart) perPass = (spent - fixedPart) / candidate.Passes;
            candidate = candidate with { Passes = Math.Max(candidate.Passes + 1, PassesFor(goal.TotalSeconds * 1.1, fixedPart, perPass)) };
        }
        return candidate;
    }

    /// <summary>The most passes calibration chooses (a terminal so slow that it needs more takes this many).</summary>
    private const int MaxPasses = 256;

    private static int PassesFor(double seconds, double fixedPart, double perPass) =>
        (int)Math.Clamp(Math.Ceiling((seconds - fixedPart) / Math.Max(perPass, 1e-6)), 1, MaxPasses);

    /// <summary>
    /// The fastest of three derivations with these parameters, in this thread's CPU time (libsodium runs
    /// Argon2id with parallelism 1 on the calling thread): what a guess costs the processor, not how busy
    /// the machine was at enrollment.
    /// </summary>
    public static TimeSpan Fastest(AccessCardKdf kdf, ReadOnlySpan<byte> salt)
    {
        var fastest = TimeSpan.MaxValue;
        for (var i = 0; i < 3; i++)
        {
            var start = ThreadCpuTime.Now();
            kdf.DeriveKey("calibration", salt);
            var spent = ThreadCpuTime.Now() - start;
            if (spent < fastest) fastest = spent;
        }
        return fastest;
    }
}

/// <summary>The calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID on Linux; elapsed time elsewhere).</summary>
internal static class ThreadCpuTime
{
    private const int ClockThreadCpuTimeId = 3;

    private static readonly Stopwatch Fallback = Stopwatch.StartNew();

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [DllImport("libc", EntryPoint = "clock_gettime")]
    private static extern int ClockGetTime(int clock, out TimeSpec time);

    public static TimeSpan Now()
    {
        if (OperatingSystem.IsLinux() && ClockGetTime(ClockThreadCpuTimeId, out var t) == 0)
        {
            return TimeSpan.FromTicks(t.Seconds * TimeSpan.TicksPerSecond + t.Nanoseconds / 100);
        }
        return Fallback.Elapsed;
    }
}
