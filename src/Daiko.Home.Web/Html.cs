using System.Net;
using System.Text;

namespace Daiko.Home.Web;

/// <summary>The console's page frame: one stylesheet, responsive (a phone gets stacked tables), no script.</summary>
internal static class Html
{
    public static string E(string? text) => WebUtility.HtmlEncode(text ?? "");

    public static string Page(string title, string active, string csrf, string body)
    {
        var html = new StringBuilder();
        html.Append($$$"""
            <!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>{{{E(title)}}} · Daiko home</title><style>
            *{box-sizing:border-box}body{font-family:system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
            header{background:#1d3557;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;align-items:center;gap:.4rem 1rem}
            header strong{font-size:1.1rem;margin-right:auto}nav{display:flex;flex-wrap:wrap;gap:.2rem .8rem}
            nav a{color:#dbe7f5;text-decoration:none;padding:.2rem 0}nav a.on{color:#fff;border-bottom:2px solid #f4a261}
            main{max-width:60rem;margin:0 auto;padding:1rem}h1{font-size:1.4rem;margin:.2rem 0 1rem}
            section{background:#fff;border:1px solid #dde1e6;border-radius:.4rem;padding:.8rem 1rem;margin-bottom:1rem}
            table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #e6e8eb;padding:.4rem;text-align:left;font-size:.92rem;vertical-align:top}
            .state{font-size:1.5rem;font-weight:bold}.muted{color:#5b6570}.err{color:#b00020;font-weight:bold}.ok{color:#1b7f3b;font-weight:bold}
            button,input{font:inherit;padding:.35rem .6rem;border-radius:.3rem;border:1px solid #9aa4ae}button{background:#1d3557;color:#fff;border:0;cursor:pointer}
            button.danger{background:#b00020}form.inline{display:inline}.code{font-family:ui-monospace,monospace;font-size:1.3rem;letter-spacing:.05rem;word-break:break-all}
            img.qr{width:16rem;max-width:100%;image-rendering:pixelated}
            @media (max-width:40rem){table,thead,tbody,tr,td,th{display:block}thead{display:none}tr{border-bottom:1px solid #dde1e6;padding:.3rem 0}
            td{border:0;padding:.15rem .2rem}td[data-l]::before{content:attr(data-l) ": ";color:#5b6570}}
            </style></head><body><header><strong>Daiko home</strong><nav>
            """);
        foreach (var (path, label) in new[] { ("/card", "Card"), ("/devices", "Devices"), ("/sessions", "Sessions"), ("/wallet", "Wallet"), ("/audit", "Audit"), ("/appliances", "Appliances"), ("/pim", "PIM") })
        {
            html.Append($"<a href=\"{path}\"{(path == active ? " class=\"on\"" : "")}>{label}</a>");
        }
        html.Append($"</nav>{Form("/logout", csrf, "<button type=\"submit\">Log out</button>", "inline")}</header><main><h1>{E(title)}</h1>{body}</main></body></html>");
        return html.ToString();
    }

    /// <summary>A POST form carrying the session's CSRF token.</summary>
    public static string Form(string action, string csrf, string inner, string? cssClass = null) =>
        $"<form method=\"post\" action=\"{E(action)}\"{(cssClass is null ? "" : $" class=\"{cssClass}\"")}><input type=\"hidden\" name=\"{ConsoleSessions.CsrfField}\" value=\"{E(csrf)}\">{inner}</form>";

    public static string Hidden(string name, string value) => $"<input type=\"hidden\" name=\"{E(name)}\" value=\"{E(value)}\">";

    /// <summary>A table whose cells carry their column label (shown before each cell on a phone).</summary>
    public static string Table(string[] headings, IEnumerable<string[]> rows, string empty)
    {
        var html = new StringBuilder("<table><thead><tr>");
        foreach (var h in headings) html.Append($"<th>{E(h)}</th>");
        html.Append("</tr></thead><tbody>");
        var any = false;
        foreach (var row in rows)
        {
            any = true;
            html.Append("<tr>");
            for (var i = 0; i < row.Length; i++) html.Append(headings[i].Length == 0 ? $"<td>{row[i]}</td>" : $"<td data-l=\"{E(headings[i])}\">{row[i]}</td>");
            html.Append("</tr>");
        }
        if (!any) html.Append($"<tr><td colspan=\"{headings.Length}\" class=\"muted\">{E(empty)}</td></tr>");
        return html.Append("</tbody></table>").ToString();
    }

    public static string Time(DateTimeOffset? at) => at is { } t ? E(t.UtcDateTime.ToString("yyyy-MM-dd HH:mm", System.Globalization.CultureInfo.InvariantCulture)) + " UTC" : "—";

    /// <summary>A small page for an outsider (no navigation, no form).</summary>
    public static string Bare(string title, string message) => $$"""
        <!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{{E(title)}}</title>
        <style>body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:32rem;padding:0 1rem}</style></head><body><h1>{{E(title)}}</h1><p>{{E(message)}}</p></body></html>
        """;
}
