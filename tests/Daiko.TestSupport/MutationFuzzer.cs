using System.Diagnostics;

namespace Daiko.TestSupport;

/// <summary>The outcome of a bounded fuzzing run.</summary>
public sealed record FuzzReport(int Iterations, int Rejected, int Accepted, TimeSpan Elapsed);

/// <summary>
/// A deterministic mutation fuzzer for parsers, bounded in iterations and time so it can run inside
/// the test suite. Inputs come from a seed corpus mutated by bit flips, interesting byte values,
/// truncation, insertion, deletion and chunk duplication. The target must either accept an input or
/// reject it with one of the expected exception types; anything else (IndexOutOfRange, NullReference,
/// a hang) fails the run and reports the offending input in hex.
/// </summary>
public static class MutationFuzzer
{
    private static readonly byte[] Interesting = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, 0x10, 0x40];

    public static FuzzReport Run(
        IReadOnlyList<byte[]> seeds,
        Action<byte[]> target,
        Func<Exception, bool> isExpectedRejection,
        int iterations,
        TimeSpan timeBudget,
        int randomSeed = 8446)
    {
        ArgumentOutOfRangeException.ThrowIfZero(seeds.Count);
        var random = new Random(randomSeed);
        var clock = Stopwatch.StartNew();
        int rejected = 0, accepted = 0, done = 0;
        // Every truncated prefix of every seed first: the classic source of parser bugs.
        var queue = new List<byte[]>();
        foreach (var seed in seeds)
        {
            for (var n = 0; n < seed.Length; n++) queue.Add(seed[..n]);
            queue.Add(seed);
        }
        for (var i = 0; i < iterations + queue.Count && clock.Elapsed < timeBudget; i++)
        {
            var input = i < queue.Count ? queue[i] : Mutate(seeds[random.Next(seeds.Count)], random);
            try
            {
                target(input);
                accepted++;
            }
            catch (Exception e) when (isExpectedRejection(e))
            {
                rejected++;
            }
            catch (Exception e)
            {
                throw new InvalidOperationException(
                    $"fuzz input #{i} ({input.Length} bytes) raised {e.GetType().Name} instead of a clean rejection: {Convert.ToHexString(input)}", e);
            }
            done++;
        }
        return new FuzzReport(done, rejected, accepted, clock.Elapsed);
    }

    private static byte[] Mutate(byte[] seed, Random random)
    {
        var data = new List<byte>(seed);
        var rounds = 1 + random.Next(4);
        for (var r = 0; r < rounds; r++)
        {
            switch (random.Next(7))
            {
                case 0 when data.Count > 0:
                    data[random.Next(data.Count)] ^= (byte)(1 << random.Next(8));
                    break;
                case 1 when data.Count > 0:
                    data[random.Next(data.Count)] = Interesting[random.Next(Interesting.Length)];
                    break;
                case 2 when data.Count > 0:
                {
                    var at = random.Next(data.Count);
                    data.RemoveRange(at, Math.Min(1 + random.Next(8), data.Count - at));
                    break;
                }
                case 3:
                {
                    var extra = new byte[1 + random.Next(16)];
                    random.NextBytes(extra);
                    data.InsertRange(random.Next(data.Count + 1), extra);
                    break;
                }
                case 4 when data.Count > 1:
                {
                    var cut = random.Next(1, data.Count);
                    data.RemoveRange(cut, data.Count - cut);
                    break;
                }
                case 5 when data.Count > 2:
                {
                    var start = random.Next(data.Count - 1);
                    var length = 1 + random.Next(Math.Min(32, data.Count - start));
                    data.InsertRange(random.Next(data.Count + 1), data.GetRange(start, length));
                    break;
                }
                default:
                    if (data.Count > 1)
                    {
                        // Length fields are big-endian u8/u16/u24: push one toward an edge.
                        var at = random.Next(data.Count - 1);
                        data[at] = 0x00;
                        data[at + 1] = (byte)random.Next(256);
                    }
                    break;
            }
        }
        if (random.Next(64) == 0)
        {
            // Now and then, an oversized input.
            data.AddRange(new byte[1 << 14]);
        }
        return data.ToArray();
    }
}
