using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace Daiko.Cli;

/// <summary>
/// Checks on what the user typed, attached to options so that a mistake is caught while parsing and
/// reported as one sentence with a short usage line (exit 2), before any command runs.
/// </summary>
internal static class CliChecks
{
    /// <summary>HOST:PORT (a name, an IPv4 address or a bracketed IPv6 address, and a port 1-65535).</summary>
    public static T HostPort<T>(this T option) where T : Option<string>
    {
        option.HelpName ??= "HOST:PORT";
        option.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string>() is { } text && HostPortProblem(text) is { } problem) r.AddError($"{option.Name} {problem}");
        });
        return option;
    }

    /// <summary>
    /// <c>--proxy-from LIST</c> of <c>home serve</c> and <c>host serve</c>: the load balancers whose PROXY
    /// headers are believed (addresses or CIDR blocks, comma-separated); it goes with --proxy-protocol.
    /// </summary>
    public static Option<string?> ProxyFromOption(Option<bool> proxyProtocol)
    {
        var option = new Option<string?>("--proxy-from")
        {
            Description = "with --proxy-protocol: the load balancers' addresses or CIDR blocks, comma-separated, whose PROXY headers are believed (default 127.0.0.1,::1); a connection from any other peer is refused and logged",
            HelpName = "LIST",
        };
        option.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string?>() is not { } text) return;
            try
            {
                Daiko.Home.Control.ProxySources.Parse(text);
            }
            catch (FormatException e)
            {
                r.AddError($"--proxy-from: {e.Message}");
            }
        });
        return option;
    }

    /// <summary>The allow-list --proxy-from names (default loopback), or an error when it is given without --proxy-protocol.</summary>
    public static void CheckProxyFrom(CommandResult result, Option<bool> proxyProtocol, Option<string?> proxyFrom)
    {
        if (result.GetValue(proxyFrom) is not null && !result.GetValue(proxyProtocol)) result.AddError("--proxy-from goes with --proxy-protocol");
    }

    public static Daiko.Home.Control.ProxySources ProxySources(string? text) =>
        text is null ? Daiko.Home.Control.ProxySources.Loopback : Daiko.Home.Control.ProxySources.Parse(text);

    /// <summary>Why <paramref name="text"/> is not HOST:PORT, or null when it is.</summary>
    public static string? HostPortProblem(string text)
    {
        if (text.Contains("://", StringComparison.Ordinal)) return $"takes HOST:PORT, not a URL ('{text}'): e.g. {ExampleHostPort(text)}";
        var colon = text.LastIndexOf(':');
        if (colon <= 0) return $"takes HOST:PORT, e.g. 127.0.0.1:8443 ('{text}' has no {(colon == 0 ? "host" : "port")})";
        var host = text[..colon];
        if (host.Contains(':') && !(host.StartsWith('[') && host.EndsWith(']'))) return $"takes HOST:PORT; write an IPv6 address in brackets, e.g. [::1]:8443 (got '{text}')";
        if (!int.TryParse(text[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
        {
            return $"takes HOST:PORT with a port from 1 to 65535 (got '{text}')";
        }
        return null;
    }

    private static string ExampleHostPort(string url) =>
        Uri.TryCreate(url, UriKind.Absolute, out var u) && u.Host.Length > 0 ? $"{u.Host}:{u.Port}" : "market.example:443";

    /// <summary>An absolute https URL.</summary>
    public static T HttpsUrl<T>(this T symbol) where T : Symbol
    {
        void Check(SymbolResult r, string? text, string name)
        {
            if (text is null) return;
            if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Host.Length == 0) r.AddError($"{name} takes an https URL, e.g. https://market.example/ (got '{text}')");
            else if (uri.Scheme != Uri.UriSchemeHttps) r.AddError($"{name} takes an https URL; Daiko does not speak {uri.Scheme} (got '{text}')");
        }
        switch (symbol)
        {
            case Option<string> o:
                o.HelpName ??= "URL";
                o.Validators.Add(r => Check(r, r.GetValueOrDefault<string>(), o.Name));
                break;
            case Argument<string> a:
                a.Validators.Add(r => Check(r, r.GetValueOrDefault<string>(), a.Name));
                break;
        }
        return symbol;
    }

    /// <summary>A new home's directory: never a terminal's (its access card would sit beside the home card).</summary>
    public static Option<string> NotATerminal(this Option<string> option)
    {
        option.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string>() is { } dir && File.Exists(Path.Combine(dir, "terminal.json")))
            {
                r.AddError($"{dir} holds an enrolled terminal: a home server needs a directory of its own, e.g. --home ~/daiko-home");
            }
        });
        return option;
    }

    /// <summary>A new terminal's directory: never a home server's (its device key would sit beside the home card).</summary>
    public static Option<string> NotAHome(this Option<string> option)
    {
        option.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string>() is { } dir && (File.Exists(Path.Combine(dir, "card", "card.json")) || File.Exists(Path.Combine(dir, "home.db"))))
            {
                r.AddError($"{dir} holds a home server: a terminal needs a directory of its own, e.g. --terminal ~/.daiko");
            }
        });
        return option;
    }

    /// <summary>A directory that already holds a home server (made by 'daiko home init').</summary>
    public static Option<string> ExistingHome(this Option<string> option)
    {
        option.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string>() is { } dir && !File.Exists(Path.Combine(dir, "card", "card.json")))
            {
                r.AddError($"no home server in {dir}: give the directory made by 'daiko home init --home DIR'");
            }
        });
        return option;
    }

    /// <summary>A directory that already holds an enrolled terminal (made by 'daiko terminal enroll').</summary>
    public static Option<string> ExistingTerminal(this Option<string> option)
    {
        option.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string>() is { } dir && !File.Exists(Path.Combine(dir, "terminal.json")))
            {
                r.AddError($"no access card in {dir}: give the directory made by 'daiko terminal enroll --terminal DIR'");
            }
        });
        return option;
    }

    /// <summary>A file that exists.</summary>
    public static Option<string> ExistingFile(this Option<string> option)
    {
        option.HelpName ??= "FILE";
        option.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string>() is { } path && !File.Exists(path)) r.AddError($"{option.Name}: there is no file {path}");
        });
        return option;
    }

    /// <summary>A file that exists (a FileInfo option).</summary>
    public static Option<FileInfo?> ExistingFile(this Option<FileInfo?> option)
    {
        option.HelpName ??= "FILE";
        option.Validators.Add(r =>
        {
            if (r.Tokens.Count > 0 && r.GetValueOrDefault<FileInfo?>() is { } file && !file.Exists) r.AddError($"{option.Name}: there is no file {file.FullName}");
        });
        return option;
    }

    /// <summary>A whole number of seconds from <paramref name="least"/> to <paramref name="most"/>.</summary>
    public static Option<int> Seconds(this Option<int> option, int least, int most)
    {
        option.HelpName ??= "SECONDS";
        option.Validators.Add(r =>
        {
            if (r.Tokens.Count > 0 && int.TryParse(r.Tokens[^1].Value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && (value < least || value > most))
            {
                r.AddError($"{option.Name} must be {least} to {most} seconds (got {value})");
            }
        });
        return option;
    }

    /// <summary>
    /// Reports a command line that did not parse: the first problem as one sentence, a typo answered
    /// with the one nearest command, and the short usage of the command reached. Exit 2.
    /// </summary>
    public static int ReportUsage(ParseResult parse)
    {
        var command = parse.CommandResult.Command;
        var path = CommandPath(parse.CommandResult);
        var unmatched = parse.UnmatchedTokens.FirstOrDefault();
        string sentence;
        if (unmatched is not null && !unmatched.StartsWith('-') && command.Subcommands.Count > 0)
        {
            var nearest = Nearest(unmatched, command.Subcommands.Where(c => !c.Hidden).Select(c => c.Name));
            sentence = $"'{path}' has no command '{unmatched}'" + (nearest is null ? "" : $"; did you mean '{path} {nearest}'?");
        }
        else if (unmatched is not null && unmatched.StartsWith('-'))
        {
            var nearest = Nearest(unmatched, command.Options.Where(o => !o.Hidden).Select(o => o.Name));
            sentence = $"'{path}' has no option '{unmatched}'" + (nearest is null ? "" : $"; did you mean '{nearest}'?");
        }
        else if (parse.Errors[0].Message.StartsWith("Required argument missing", StringComparison.Ordinal) && command.Arguments.FirstOrDefault() is { } argument)
        {
            sentence = $"'{path}' needs {argument.HelpName ?? argument.Name} ({argument.Description})";
        }
        else
        {
            sentence = Plain(parse.Errors[0].Message, (parse.Errors[0].SymbolResult as OptionResult)?.Option.Name);
        }
        CliConsole.Fail(sentence);
        Console.Error.WriteLine($"usage: {Usage(command, path)}");
        Console.Error.WriteLine($"       (more: {path} --help)");
        return CliConsole.Usage;
    }

    /// <summary>
    /// System.CommandLine's own messages in the CLI's words, one line: "--amount takes a whole number (got '1.5')" for
    /// "Cannot parse argument '1.5' for option '--amount' as expected type 'System.Int64'", and "--mode takes one of
    /// auto, resume, … (got 'fast')" for its multi-line list of allowed values.
    /// </summary>
    public static string Plain(string message, string? option = null)
    {
        var parsing = System.Text.RegularExpressions.Regex.Match(message, @"^Cannot parse argument '(?<value>.*)' for (option|argument) '(?<name>[^']*)' as expected type '(?<type>[^']*)'");
        if (parsing.Success)
        {
            var type = parsing.Groups["type"].Value;
            var kind = type.Contains("Int", StringComparison.Ordinal) ? "a whole number"
                : type.Contains("Double", StringComparison.Ordinal) || type.Contains("Decimal", StringComparison.Ordinal) ? "a number"
                : type.Contains("Boolean", StringComparison.Ordinal) ? "true or false" : "another kind of value";
            return $"{parsing.Groups["name"].Value} takes {kind} (got '{parsing.Groups["value"].Value}')";
        }
        var choice = System.Text.RegularExpressions.Regex.Match(message, @"^Argument '(?<value>.*)' not recognized\. Must be one of:(?<list>[\s\S]*)$");
        if (choice.Success)
        {
            var allowed = choice.Groups["list"].Value.Split(['\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(a => a.Trim('\''));
            return option is null
                ? $"'{choice.Groups["value"].Value}' is not one of {string.Join(", ", allowed)}"
                : $"{option} takes one of {string.Join(", ", allowed)} (got '{choice.Groups["value"].Value}')";
        }
        return message.TrimEnd('.').ReplaceLineEndings(" ");
    }

    private static string CommandPath(CommandResult? result)
    {
        var names = new List<string>();
        for (SymbolResult? r = result; r is CommandResult c; r = c.Parent) names.Add(c.Command is RootCommand ? "daiko" : c.Command.Name);
        names.Reverse();
        return string.Join(' ', names);
    }

    /// <summary>One line: the command, its arguments, its required options with their placeholders, then [options].</summary>
    public static string Usage(Command command, string path)
    {
        var parts = new List<string> { path };
        if (command.Subcommands.Any(c => !c.Hidden)) parts.Add("COMMAND");
        parts.AddRange(command.Arguments.Select(a => a.HelpName ?? a.Name));
        parts.AddRange(command.Options.Where(o => o.Required).Select(o => $"{o.Name} {o.HelpName ?? o.Name.TrimStart('-').ToUpperInvariant()}"));
        if (command.Options.Any(o => !o.Required && !o.Hidden)) parts.Add("[options]");
        return string.Join(' ', parts);
    }

    /// <summary>The one candidate within a small edit distance of <paramref name="typed"/>, if any.</summary>
    public static string? Nearest(string typed, IEnumerable<string> candidates)
    {
        var best = candidates.Select(c => (Name: c, Distance: Distance(typed, c))).OrderBy(x => x.Distance).FirstOrDefault();
        return best.Name is not null && best.Distance <= Math.Max(2, typed.Length / 3) ? best.Name : null;
    }

    private static int Distance(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (var i = 1; i <= a.Length; i++)
        {
            var diagonal = row[0];
            row[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (char.ToLowerInvariant(a[i - 1]) == char.ToLowerInvariant(b[j - 1]) ? 0 : 1));
                diagonal = above;
            }
        }
        return row[b.Length];
    }
}
