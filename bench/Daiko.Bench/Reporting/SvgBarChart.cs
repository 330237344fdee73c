using System.Globalization;
using System.Security;
using System.Text;

namespace Daiko.Bench.Reporting;

/// <summary>A dependency-free grouped horizontal bar chart in SVG, with whiskers for the spread.</summary>
public static class SvgBarChart
{
    public sealed record Bar(string Label, double Value, double Low, double High);

    public sealed record Panel(string Title, string Unit, IReadOnlyList<Bar> Bars);

    public static string Render(string title, IReadOnlyList<Panel> panels)
    {
        const int width = 980, labelWidth = 210, barHeight = 18, gap = 6, panelGap = 46, left = 10, plotWidth = width - labelWidth - 90;
        var height = 50 + panels.Sum(p => 30 + p.Bars.Count * (barHeight + gap) + panelGap);
        var svg = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        svg.Append(inv, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        svg.Append(inv, $"<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"24\" font-size=\"16\" font-weight=\"bold\">{Escape(title)}</text>\n");
        var y = 50;
        foreach (var panel in panels)
        {
            svg.Append(inv, $"<text x=\"{left}\" y=\"{y + 12}\" font-weight=\"bold\">{Escape(panel.Title)} ({Escape(panel.Unit)})</text>\n");
            y += 24;
            var max = panel.Bars.Select(b => double.IsNaN(b.High) ? b.Value : Math.Max(b.Value, b.High)).Where(v => !double.IsNaN(v)).DefaultIfEmpty(1).Max();
            if (max <= 0) max = 1;
            foreach (var bar in panel.Bars)
            {
                var w = double.IsNaN(bar.Value) ? 0 : bar.Value / max * plotWidth;
                svg.Append(inv, $"<text x=\"{left}\" y=\"{y + 13}\">{Escape(bar.Label)}</text>\n");
                svg.Append(inv, $"<rect x=\"{labelWidth}\" y=\"{y}\" width=\"{w:0.#}\" height=\"{barHeight}\" fill=\"#4a7ebb\"/>\n");
                if (!double.IsNaN(bar.Low) && !double.IsNaN(bar.High))
                {
                    var x1 = labelWidth + bar.Low / max * plotWidth;
                    var x2 = labelWidth + bar.High / max * plotWidth;
                    var cy = y + barHeight / 2;
                    svg.Append(inv, $"<line x1=\"{x1:0.#}\" y1=\"{cy}\" x2=\"{x2:0.#}\" y2=\"{cy}\" stroke=\"black\"/>\n");
                }
                svg.Append(inv, $"<text x=\"{labelWidth + w + 6:0.#}\" y=\"{y + 13}\">{(double.IsNaN(bar.Value) ? "n/a" : bar.Value.ToString("0.##", inv))}</text>\n");
                y += barHeight + gap;
            }
            y += panelGap - 24;
        }
        svg.Append("</svg>\n");
        return svg.ToString();
    }

    private static string Escape(string s) => SecurityElement.Escape(s) ?? "";
}
