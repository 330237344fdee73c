using System.Globalization;
using System.Text;

namespace Daiko.Bench.Load;

/// <summary>One look at the home server during a soak: /proc figures in MiB and threads, and its runtime's GC counters (NaN when unread).</summary>
public readonly record struct SoakSample(double RssMb, double AnonymousMb, double FileMb, double Threads, double GcHeapMb, double GcCommittedMb, double Gen2Mb, double FragmentationPercent, double MethodsJitted);

/// <summary>
/// What the soak's samples say about the home server's memory: the first, middle and last tenth of the
/// run, the change from first to last tenth (the acceptance figure), from the middle to the last tenth
/// (growth once warmed up), and, after a warm-up phase, from the first tenth after it.
/// </summary>
public sealed class SoakMemory
{
    private static readonly (string Label, Func<SoakSample, double> Value, string Format)[] Rows =
    [
        ("RSS, MB", s => s.RssMb, "0.0"),
        ("  anonymous (GC heap, native heaps, stacks, jitted code), MB", s => s.AnonymousMb, "0.0"),
        ("  file-backed (mapped assemblies and libraries), MB", s => s.FileMb, "0.0"),
        ("GC heap after the last collection, MB", s => s.GcHeapMb, "0.0"),
        ("GC committed, MB", s => s.GcCommittedMb, "0.0"),
        ("gen 2, MB", s => s.Gen2Mb, "0.0"),
        ("GC fragmentation, %", s => s.FragmentationPercent, "0.0"),
        ("threads", s => s.Threads, "0.0"),
        ("methods jitted so far", s => s.MethodsJitted, "0"),
    ];

    private readonly IReadOnlyList<SoakSample> _samples;
    private readonly int _warmUpSamples;

    /// <param name="warmUpSamples">how many of the first samples were taken during a warm-up phase (0: none).</param>
    public SoakMemory(IReadOnlyList<SoakSample> samples, int warmUpSamples)
    {
        _samples = samples;
        _warmUpSamples = Math.Clamp(warmUpSamples, 0, samples.Count);
        var tenth = Math.Max(1, samples.Count / 10);
        First = Mean(samples.Take(tenth));
        Middle = Mean(samples.Skip(samples.Count / 2 - tenth / 2).Take(tenth));
        Last = Mean(samples.Skip(samples.Count - tenth));
        var measured = samples.Skip(_warmUpSamples).ToList();
        AfterWarmUpFirst = Mean(measured.Take(Math.Max(1, measured.Count / 10)));
    }

    public SoakSample First { get; }

    public SoakSample Middle { get; }

    public SoakSample Last { get; }

    /// <summary>The first tenth of the samples taken after the warm-up (the same as <see cref="First"/> without one).</summary>
    public SoakSample AfterWarmUpFirst { get; }

    /// <summary>The acceptance figure: the RSS of the last tenth over the first tenth's, less one.</summary>
    public double Change => Last.RssMb / First.RssMb - 1;

    public bool Flat => Math.Abs(Change) <= 0.10;

    public double AfterWarmUpChange => Last.RssMb / AfterWarmUpFirst.RssMb - 1;

    /// <summary>Growth once the run is half done: the last tenth's RSS over the middle tenth's, less one.</summary>
    public double SecondHalfChange => Last.RssMb / Middle.RssMb - 1;

    public double Peak => _samples.Max(s => s.RssMb);

    /// <summary>The run in twentieths, for one figure: whether it levels off (pools and heaps growing to the load) or keeps climbing (a leak).</summary>
    public double[] Curve(Func<SoakSample, double> value) =>
        [.. Enumerable.Range(0, 20).Select(i => Math.Round(MeanOf(_samples.Skip(i * _samples.Count / 20).Take(Math.Max(1, _samples.Count / 20)).Select(value)), 1))];

    /// <summary>The report's lines about memory (markdown).</summary>
    public string Markdown(int warmUpSessions)
    {
        var inv = CultureInfo.InvariantCulture;
        string Pct(double v) => (v * 100).ToString("+0.0;-0.0", inv) + " %";
        var md = new StringBuilder();
        md.AppendLine(string.Create(inv, $"- home RSS, mean of the first and last tenth of {_samples.Count} samples (the acceptance figure, from the first session{(warmUpSessions > 0 ? ", warm-up included" : "")}): {First.RssMb:0.0} MB → {Last.RssMb:0.0} MB ({Pct(Change)}), {(Flat ? "flat within ±10 %" : "NOT flat within ±10 %")}; peak {Peak:0.0} MB"));
        if (warmUpSessions > 0)
            md.AppendLine(string.Create(inv, $"- after a warm-up of {warmUpSessions} sessions a terminal ({_warmUpSamples} samples), first tenth of the rest → last tenth: {AfterWarmUpFirst.RssMb:0.0} MB → {Last.RssMb:0.0} MB ({Pct(AfterWarmUpChange)}), {(Math.Abs(AfterWarmUpChange) <= 0.10 ? "flat" : "NOT flat")} within ±10 %"));
        md.AppendLine(string.Create(inv, $"- second half, middle tenth → last tenth: {Middle.RssMb:0.0} MB → {Last.RssMb:0.0} MB ({Pct(SecondHalfChange)})"));
        md.AppendLine(string.Create(inv, $"- by twentieths of the run: RSS {string.Join(' ', Curve(s => s.RssMb))} MB; anonymous {string.Join(' ', Curve(s => s.AnonymousMb))} MB; GC committed {string.Join(' ', Curve(s => s.GcCommittedMb))} MB; threads {string.Join(' ', Curve(s => s.Threads))}"));
        md.AppendLine();
        md.AppendLine("| home server | first tenth | middle tenth | last tenth |");
        md.AppendLine("|---|---:|---:|---:|");
        foreach (var (label, value, format) in Rows)
            md.AppendLine($"| {label} | {Cell(value(First), format)} | {Cell(value(Middle), format)} | {Cell(value(Last), format)} |");
        return md.ToString();
    }

    /// <summary>The figures for soak.json.</summary>
    public object Json() => new
    {
        rss_first_tenth_mb = Round(First.RssMb), rss_middle_tenth_mb = Round(Middle.RssMb), rss_last_tenth_mb = Round(Last.RssMb),
        rss_peak_mb = Round(Peak), rss_change = Round3(Change), rss_flat = Flat,
        rss_after_warm_up_first_tenth_mb = Round(AfterWarmUpFirst.RssMb), rss_change_after_warm_up = Round3(AfterWarmUpChange),
        rss_change_second_half = Round3(SecondHalfChange),
        rss_curve_mb = JsonCurve(s => s.RssMb), anonymous_curve_mb = JsonCurve(s => s.AnonymousMb), gc_committed_curve_mb = JsonCurve(s => s.GcCommittedMb), threads_curve = JsonCurve(s => s.Threads),
        tenths = new[] { First, Middle, Last }.Select(s => new
        {
            rss_mb = Round(s.RssMb), anonymous_mb = Round(s.AnonymousMb), file_mb = Round(s.FileMb), threads = Round(s.Threads),
            gc_heap_mb = Round(s.GcHeapMb), gc_committed_mb = Round(s.GcCommittedMb), gen2_mb = Round(s.Gen2Mb), gc_fragmentation_percent = Round(s.FragmentationPercent), methods_jitted = Round(s.MethodsJitted),
        }).ToArray(),
    };

    /// <summary>A curve for JSON, which has no NaN: a twentieth without a value read is null.</summary>
    private double?[] JsonCurve(Func<SoakSample, double> value) => [.. Curve(value).Select(Round)];

    private static double? Round(double v) => double.IsNaN(v) ? null : Math.Round(v, 1);

    private static double? Round3(double v) => double.IsNaN(v) ? null : Math.Round(v, 3);

    private static string Cell(double v, string format) => double.IsNaN(v) ? "n/a" : v.ToString(format, CultureInfo.InvariantCulture);

    /// <summary>The mean of the values that were read (NaN when none was: the runtime's counters arrive a second after the session starts).</summary>
    private static double MeanOf(IEnumerable<double> values)
    {
        var read = values.Where(v => !double.IsNaN(v)).ToList();
        return read.Count == 0 ? double.NaN : read.Average();
    }

    private static SoakSample Mean(IEnumerable<SoakSample> samples)
    {
        var list = samples.ToList();
        return new SoakSample(MeanOf(list.Select(s => s.RssMb)), MeanOf(list.Select(s => s.AnonymousMb)), MeanOf(list.Select(s => s.FileMb)), MeanOf(list.Select(s => s.Threads)),
            MeanOf(list.Select(s => s.GcHeapMb)), MeanOf(list.Select(s => s.GcCommittedMb)), MeanOf(list.Select(s => s.Gen2Mb)), MeanOf(list.Select(s => s.FragmentationPercent)), MeanOf(list.Select(s => s.MethodsJitted)));
    }
}
