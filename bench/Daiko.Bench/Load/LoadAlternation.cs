using System.Globalization;

namespace Daiko.Bench.Load;

/// <summary>
/// A full handshake at the home server against the concurrent <c>openssl s_time -new</c> peer, in alternating
/// slices at one K: handoff, s_time, resume-miss-handout, and again, so that both sides of the ratio meet the
/// same moments of the shared machine. (The rows of the table are a few minutes apart from their peer, and this
/// machine's speed for the same work moves by a third over minutes: nginx's own CPU a handshake reads 1.45 ms in
/// one row and 2.2 ms in another.)
/// </summary>
public static class LoadAlternation
{
    /// <summary>What the alternating slices at one K measured.</summary>
    /// <param name="HandoffSlices">each handoff slice's rate, in order.</param>
    /// <param name="OpensslSlices">each s_time slice's rate (nginx's count while all K ran), in order.</param>
    public sealed record Alternated(int Terminals, int Rounds, int SliceSeconds,
        double HandoffPerSecond, double MissHandoutPerSecond, double OpensslPerSecond,
        IReadOnlyList<double> HandoffSlices, IReadOnlyList<double> MissHandoutSlices, IReadOnlyList<double> OpensslSlices, int Errors, int OpensslFailed)
    {
        public double HandoffRatio => HandoffPerSecond / OpensslPerSecond;

        public double MissHandoutRatio => MissHandoutPerSecond / OpensslPerSecond;
    }

    public static async Task<Alternated> RunAsync(LoadRig rig, IReadOnlyList<LoadTerminal> terminals, int rounds, int sliceSeconds)
    {
        var slice = TimeSpan.FromSeconds(sliceSeconds);
        var handoff = new List<LoadRun>();
        var miss = new List<LoadRun>();
        var openssl = new List<LoadPeers.OpensslPeer>();
        for (var i = 0; i < rounds; i++)
        {
            handoff.Add(await LoadRunner.ClosedAsync("handoff", terminals, slice, rig.Home, t => t.SessionAsync(LoadMode.Handoff, CancellationToken.None)));
            openssl.Add(await LoadPeers.OpensslAsync(rig.Pki, rig.Nginx, terminals.Count, sliceSeconds));
            miss.Add(await LoadRunner.ClosedAsync("resume-miss-handout", terminals, slice, rig.Home, t => t.TicketAsync(CancellationToken.None, fresh: true)));
        }
        static double Rate(IEnumerable<LoadRun> runs) => runs.Sum(r => r.Sessions) / runs.Sum(r => r.Seconds);
        return new Alternated(terminals.Count, rounds, sliceSeconds,
            Rate(handoff), Rate(miss),
            openssl.Sum(o => o.PerSecond * o.WindowSeconds) / openssl.Sum(o => o.WindowSeconds),
            handoff.Select(r => r.SessionsPerSecond).ToList(), miss.Select(r => r.SessionsPerSecond).ToList(), openssl.Select(o => o.PerSecond).ToList(),
            handoff.Concat(miss).Sum(r => r.Errors), openssl.Sum(o => o.Failed));
    }

    public static string Line(Alternated a)
    {
        var inv = CultureInfo.InvariantCulture;
        string Slices(IEnumerable<double> rates) => string.Join(" ", rates.Select(r => r.ToString("0", inv)));
        return string.Create(inv,
            $"  K={a.Terminals,-4} alternating {a.Rounds} × {a.SliceSeconds} s: handoff {a.HandoffPerSecond:0.0}/s ({Slices(a.HandoffSlices)}), resume-miss-handout {a.MissHandoutPerSecond:0.0}/s ({Slices(a.MissHandoutSlices)}), s_time {a.OpensslPerSecond:0.0}/s ({Slices(a.OpensslSlices)}): handoff {a.HandoffRatio:0.00}×, miss-handout {a.MissHandoutRatio:0.00}×; errors {a.Errors}, s_time failed {a.OpensslFailed}");
    }
}
