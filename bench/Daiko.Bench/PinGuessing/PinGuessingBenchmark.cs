using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Daiko.Cards.Access;

namespace Daiko.Bench.PinGuessing;

/// <summary>
/// <c>access-card-kdf [--seconds N]</c>: what an attacker holding a copy of a file-backed access card's
/// key file pays per PIN guess. Calibrates Argon2id exactly as enrollment does (deriving a key file's key), then runs guesses
/// (Argon2id with the calibrated parameters) on one core for N seconds and reports guesses per second
/// of CPU time and the time to try every PIN of 6 digits, 8 digits and 6 lowercase
/// letters and digits on this core — and, for comparison, the PBKDF2 (600,000 iterations) files the
/// card wrote before.
/// </summary>
public static class PinGuessingBenchmark
{
    public static int Run(string[] args)
    {
        var seconds = args.Length >= 2 && args[0] == "--seconds" ? double.Parse(args[1], CultureInfo.InvariantCulture) : 10;
        var clock = Stopwatch.StartNew();
        var salt = RandomNumberGenerator.GetBytes(AccessCardKdf.SaltLength);
        var (kdf, key) = AccessCardKdf.CalibrateAndDerive("123456", salt);
        CryptographicOperations.ZeroMemory(key);
        var calibration = clock.Elapsed;
        var argon2 = Guesses(() => kdf.DeriveKey("123456", salt), seconds);
        var pbkdf2 = Guesses(() => Rfc2898DeriveBytes.Pbkdf2("123456", salt, 600_000, HashAlgorithmName.SHA256, 32), seconds);

        Console.WriteLine($"# access-card key file: offline PIN guessing on one core of this machine ({Environment.ProcessorCount} cores)");
        Console.WriteLine($"calibrated Argon2id: m={kdf.MemoryKiB} KiB, t={kdf.Passes}, p={AccessCardKdf.Parallelism} (calibration, which gives the key file its key too, took {calibration.TotalSeconds:0.0} s); rates are per second of one thread's CPU time");
        Console.WriteLine();
        Console.WriteLine("| KDF | guesses/s | 6 digits (10^6) | 8 digits (10^8) | 6 of [a-z0-9] (36^6) |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        Row($"Argon2id m={kdf.MemoryKiB / 1024} MiB t={kdf.Passes}", argon2);
        Row("PBKDF2-SHA256 600k (before)", pbkdf2);
        Console.WriteLine();
        Console.WriteLine("Times are for one core trying every PIN; an attacker with k cores divides them by k (Argon2id's memory limits how many run at once).");
        return 0;
    }

    /// <summary>Guesses per second of this thread's CPU time (what a guess costs a core, however busy the machine is).</summary>
    private static double Guesses(Action guess, double seconds)
    {
        guess();
        var clock = Stopwatch.StartNew();
        var start = ThreadCpuTime.Now();
        var count = 0;
        while (clock.Elapsed.TotalSeconds < seconds || count < 3)
        {
            guess();
            count++;
        }
        return count / (ThreadCpuTime.Now() - start).TotalSeconds;
    }

    private static void Row(string name, double perSecond) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {name} | {perSecond:0.00} | {Span(1e6 / perSecond)} | {Span(1e8 / perSecond)} | {Span(Math.Pow(36, 6) / perSecond)} |"));

    private static string Span(double seconds) => seconds switch
    {
        < 3600 => $"{seconds / 60:0.0} min",
        < 86400 * 2 => $"{seconds / 3600:0.0} h",
        < 86400 * 730 => $"{seconds / 86400:0} days",
        _ => $"{seconds / (86400 * 365.25):0} years",
    };
}
