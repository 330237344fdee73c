namespace Daiko.Bench.Reporting;

/// <summary>Median and spread of repeated measurements.</summary>
public sealed record Distribution(double Median, double P10, double P90, double Min, double Max, int Count)
{
    public static Distribution Of(IReadOnlyCollection<double> samples)
    {
        if (samples.Count == 0) return new Distribution(double.NaN, double.NaN, double.NaN, double.NaN, double.NaN, 0);
        var sorted = samples.Order().ToArray();
        return new Distribution(Percentile(sorted, 0.5), Percentile(sorted, 0.1), Percentile(sorted, 0.9), sorted[0], sorted[^1], sorted.Length);
    }

    public static double Percentile(double[] sorted, double p)
    {
        if (sorted.Length == 1) return sorted[0];
        var rank = p * (sorted.Length - 1);
        var lo = (int)Math.Floor(rank);
        var hi = (int)Math.Ceiling(rank);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
    }

    public string Format(string unit = "") =>
        Count == 0 ? "–" : $"{Median:0.##}{unit} ({P10:0.##}–{P90:0.##})";
}
