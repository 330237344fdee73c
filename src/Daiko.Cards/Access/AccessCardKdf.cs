using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using NSec.Cryptography;

namespace Daiko.Cards.Access;

/// <summary>
/// Argon2id parameters for a file-backed access card: memory in KiB and passes (parallelism 1, as
/// libsodium requires). The product always calibrates them when it writes a key file (enrollment, PIN
/// change, migration: <see cref="CalibrateAndDerive"/>) so that one guess costs at least <see cref="Target"/>
/// on the terminal; the parameters are stored in the key file, and unlocking reads them back from there.
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

    /// <summary>The most memory a key file may ask a guess to take (1 GiB): a file asking more is damaged, not obeyed.</summary>
    internal const int MaxMemoryKiB = 1024 * 1024;

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
    /// here, and derives the key of <paramref name="pin"/> and <paramref name="salt"/> with them: the
    /// derivations that prove the choice are that key's, so a key file written under calibrated
    /// parameters costs no derivation beyond the calibration. 64 MiB, and as many passes as reach the
    /// target. A derivation's cost is a fixed part (taking the memory) and the same work again for each
    /// pass, so both are read from the faster of two derivations at one pass and at four (a tenth of a
    /// second or two each), and the passes chosen with a tenth to spare. The choice must then hold: the
    /// faster of two derivations with it reaches the target (CPU time and the faster, so that a busy
    /// machine does not make the cost look higher than it is), else the passes are raised from what they
    /// took; and one that took more than twice the target (a reading thrown by noise) is lowered likewise
    /// and checked again, for the first few rounds only: past them a reading at or above the target is
    /// taken, and one below it raises the passes, so the choice settles and always on a measured reading
    /// that reached the target (or on the most passes, on a machine too fast for them).
    /// </summary>
    public static (AccessCardKdf Kdf, byte[] Key) CalibrateAndDerive(string pin, ReadOnlySpan<byte> salt, TimeSpan? target = null)
    {
        var goal = (target ?? Target).TotalSeconds;
        var one = new AccessCardKdf(DefaultMemoryKiB, 1);
        var probeSalt = new byte[SaltLength];
        var onePass = Fastest(one, probeSalt, 2).TotalSeconds;
        var candidate = one;
        var fixedPart = 0.0;
        var perPass = onePass;
        if (onePass < goal)
        {
            var fourPasses = Fastest(one with { Passes = 4 }, probeSalt, 2).TotalSeconds;
            // Noise between the two readings is kept within reason: a pass costs at least a quarter of one pass with the
            // memory taken (taking 64 MiB costs about as much as a pass over it here) and at most all of it.
            perPass = Math.Clamp((fourPasses - onePass) / 3, onePass / 4, onePass);
            fixedPart = onePass - perPass;
            candidate = one with { Passes = PassesFor(goal * 1.1, fixedPart, perPass) };
        }
        for (var round = 0; ; round++)
        {
            // The faster of two: the second only when the first reached the target (else the faster cannot).
            var (spent, key) = Timed(candidate, pin, salt);
            try
            {
                if (spent >= goal)
                {
                    var (again, same) = Timed(candidate, pin, salt);
                    CryptographicOperations.ZeroMemory(same);
                    spent = Math.Min(spent, again);
                }
            }
            catch
            {
                CryptographicOperations.ZeroMemory(key);
                throw;
            }
            // Lowering stops after a few rounds (noise could otherwise swing the passes between too few and too many).
            var tooCostly = spent > 2 * goal && candidate.Passes > 1 && round < LoweringRounds;
            if ((spent >= goal && !tooCostly) || candidate.Passes == MaxPasses) return (candidate, key);
            CryptographicOperations.ZeroMemory(key);
            // A pass costs other than the readings said: read it from these derivations.
            if (spent > fixedPart) perPass = (spent - fixedPart) / candidate.Passes;
            var passes = PassesFor(goal * 1.1, fixedPart, perPass);
            candidate = candidate with { Passes = tooCostly ? Math.Min(passes, candidate.Passes - 1) : Math.Max(passes, candidate.Passes + 1) };
        }
    }

    private static (double Seconds, byte[] Key) Timed(AccessCardKdf kdf, string pin, ReadOnlySpan<byte> salt)
    {
        var start = ThreadCpuTime.Now();
        var key = kdf.DeriveKey(pin, salt);
        return ((ThreadCpuTime.Now() - start).TotalSeconds, key);
    }

    /// <summary>The most passes calibration chooses (a terminal so fast that even these take less than the target takes this many).</summary>
    internal const int MaxPasses = 256;

    /// <summary>The rounds in which a reading above twice the target lowers the passes; past them, passes only rise.</summary>
    private const int LoweringRounds = 6;

    private static int PassesFor(double seconds, double fixedPart, double perPass) =>
        (int)Math.Clamp(Math.Ceiling((seconds - fixedPart) / Math.Max(perPass, 1e-6)), 1, MaxPasses);

    /// <summary>
    /// The fastest of <paramref name="runs"/> derivations with these parameters, in this thread's CPU time
    /// (libsodium runs Argon2id with parallelism 1 on the calling thread): what a guess costs the processor,
    /// not how busy the machine was at enrollment.
    /// </summary>
    public static TimeSpan Fastest(AccessCardKdf kdf, ReadOnlySpan<byte> salt, int runs)
    {
        var fastest = double.MaxValue;
        for (var i = 0; i < runs; i++)
        {
            var (spent, key) = Timed(kdf, "calibration", salt);
            CryptographicOperations.ZeroMemory(key);
            fastest = Math.Min(fastest, spent);
        }
        return TimeSpan.FromSeconds(fastest);
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
