using System.Globalization;
using System.Text.RegularExpressions;

namespace Daiko.TestSupport;

public sealed record PrometheusSample(string Name, IReadOnlyDictionary<string, string> Labels, double Value);

/// <summary>
/// A strict parser of the Prometheus text exposition format (version 0.0.4) as Prometheus's own parser
/// reads it: HELP and TYPE lines, metric and label name syntax, escaped label values, float values
/// (with +Inf, -Inf, NaN), one TYPE per family before its samples, and histograms whose buckets are
/// cumulative, ordered by le, end in +Inf and agree with _count. Anything else throws <see cref="FormatException"/>.
/// </summary>
public static partial class PrometheusText
{
    [GeneratedRegex("^[a-zA-Z_:][a-zA-Z0-9_:]*$")]
    private static partial Regex MetricName();

    [GeneratedRegex("^[a-zA-Z_][a-zA-Z0-9_]*$")]
    private static partial Regex LabelName();

    public static (IReadOnlyList<PrometheusSample> Samples, IReadOnlyDictionary<string, string> Types) Parse(string text)
    {
        if (text.Length > 0 && !text.EndsWith('\n')) throw new FormatException("the exposition must end with a newline");
        var types = new Dictionary<string, string>();
        var helps = new HashSet<string>();
        var samples = new List<PrometheusSample>();
        var lineNumber = 0;
        foreach (var line in text.Split('\n')[..^1])
        {
            lineNumber++;
            if (line.Length == 0) continue;
            if (line.StartsWith('#'))
            {
                var parts = line.Split(' ', 4);
                if (parts.Length >= 3 && parts[1] == "TYPE")
                {
                    if (!MetricName().IsMatch(parts[2])) throw new FormatException($"line {lineNumber}: bad metric name in TYPE");
                    if (parts.Length != 4 || parts[3] is not ("counter" or "gauge" or "histogram" or "summary" or "untyped")) throw new FormatException($"line {lineNumber}: bad TYPE");
                    if (!types.TryAdd(parts[2], parts[3])) throw new FormatException($"line {lineNumber}: second TYPE for {parts[2]}");
                    if (samples.Any(s => Family(s.Name, types) == parts[2])) throw new FormatException($"line {lineNumber}: TYPE after samples of {parts[2]}");
                }
                else if (parts.Length >= 3 && parts[1] == "HELP")
                {
                    if (!MetricName().IsMatch(parts[2]) || !helps.Add(parts[2])) throw new FormatException($"line {lineNumber}: bad or repeated HELP");
                }
                continue;
            }
            samples.Add(ParseSample(line, lineNumber));
        }
        CheckHistograms(samples, types);
        return (samples, types);
    }

    private static PrometheusSample ParseSample(string line, int lineNumber)
    {
        var i = 0;
        while (i < line.Length && line[i] is not ('{' or ' ')) i++;
        var name = line[..i];
        if (!MetricName().IsMatch(name)) throw new FormatException($"line {lineNumber}: bad metric name '{name}'");
        var labels = new Dictionary<string, string>();
        if (i < line.Length && line[i] == '{')
        {
            i++;
            while (line[i] != '}')
            {
                var eq = line.IndexOf('=', i);
                var label = line[i..eq];
                if (!LabelName().IsMatch(label)) throw new FormatException($"line {lineNumber}: bad label name '{label}'");
                if (line[eq + 1] != '"') throw new FormatException($"line {lineNumber}: label value not quoted");
                var value = new System.Text.StringBuilder();
                var j = eq + 2;
                for (; line[j] != '"'; j++)
                {
                    if (line[j] != '\\') { value.Append(line[j]); continue; }
                    value.Append(line[++j] switch { '\\' => '\\', '"' => '"', 'n' => '\n', _ => throw new FormatException($"line {lineNumber}: bad escape") });
                }
                if (!labels.TryAdd(label, value.ToString())) throw new FormatException($"line {lineNumber}: label {label} twice");
                i = j + 1;
                if (line[i] == ',') i++;
                else if (line[i] != '}') throw new FormatException($"line {lineNumber}: expected , or }}");
            }
            i++;
        }
        if (i >= line.Length || line[i] != ' ') throw new FormatException($"line {lineNumber}: no value");
        var fields = line[(i + 1)..].Split(' ');
        if (fields.Length is < 1 or > 2) throw new FormatException($"line {lineNumber}: expected a value and an optional timestamp");
        var number = fields[0] switch
        {
            "+Inf" => double.PositiveInfinity,
            "-Inf" => double.NegativeInfinity,
            "NaN" => double.NaN,
            var v => double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d : throw new FormatException($"line {lineNumber}: bad value '{v}'"),
        };
        if (fields.Length == 2 && !long.TryParse(fields[1], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _)) throw new FormatException($"line {lineNumber}: bad timestamp");
        return new PrometheusSample(name, labels, number);
    }

    private static string Family(string sample, IReadOnlyDictionary<string, string> types)
    {
        foreach (var suffix in new[] { "_bucket", "_count", "_sum" })
        {
            if (sample.EndsWith(suffix, StringComparison.Ordinal) && types.TryGetValue(sample[..^suffix.Length], out var t) && t is "histogram" or "summary") return sample[..^suffix.Length];
        }
        return sample;
    }

    private static void CheckHistograms(List<PrometheusSample> samples, Dictionary<string, string> types)
    {
        foreach (var (family, _) in types.Where(t => t.Value == "histogram"))
        {
            foreach (var series in samples.Where(s => s.Name == family + "_bucket").GroupBy(s => string.Join(',', s.Labels.Where(l => l.Key != "le").OrderBy(l => l.Key).Select(l => $"{l.Key}={l.Value}"))))
            {
                var buckets = series.Select(s => (Le: s.Labels["le"] == "+Inf" ? double.PositiveInfinity : double.Parse(s.Labels["le"], CultureInfo.InvariantCulture), s.Value)).ToList();
                for (var k = 1; k < buckets.Count; k++)
                {
                    if (buckets[k].Le <= buckets[k - 1].Le) throw new FormatException($"{family}: buckets not ordered by le");
                    if (buckets[k].Value < buckets[k - 1].Value) throw new FormatException($"{family}: buckets not cumulative");
                }
                if (!double.IsPositiveInfinity(buckets[^1].Le)) throw new FormatException($"{family}: no +Inf bucket");
                var count = samples.Single(s => s.Name == family + "_count" && s.Labels.Where(l => l.Key != "le").OrderBy(l => l.Key).Select(l => $"{l.Key}={l.Value}").SequenceEqual(series.Key.Length == 0 ? [] : series.Key.Split(',')));
                if (count.Value != buckets[^1].Value) throw new FormatException($"{family}: +Inf bucket differs from _count");
            }
        }
    }
}
