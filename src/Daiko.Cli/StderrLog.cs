using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Daiko.Cli;

/// <summary>
/// The home server's log lines on stderr, one a line: plain (the UTC time and the sentence, as
/// 'daiko home serve' always printed them) or JSON (<c>--log-format json</c>: one object a line with
/// the time, level, category, event, sentence and the sentence's named fields). Every line comes from
/// a LoggerMessage template, whose fields never hold a PIN, key, ticket or secret. The lines are
/// written by a task of their own (<see cref="LogLines"/>): logging never waits for stderr, and
/// disposal lets the queued lines out.
/// </summary>
internal sealed class StderrLog : ILoggerFactory
{
    private readonly bool _json;
    private readonly bool _debug = Environment.GetEnvironmentVariable("DAIKO_DEBUG") == "1";
    private readonly LogLines _lines;

    public StderrLog(bool json = false, Stream? sink = null)
    {
        _json = json;
        _lines = new LogLines(sink ?? Console.OpenStandardError(), DroppedNotice);
    }

    public ILogger CreateLogger(string categoryName) => new Category(categoryName, this);

    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException("the CLI logs to stderr only");

    public void Dispose() => _lines.Dispose();

    private string DroppedNotice(long dropped)
    {
        var message = $"{dropped} log line(s) dropped: stderr did not take them as fast as they came";
        return _json
            ? Category.JsonLine("Daiko.Log", DateTimeOffset.UtcNow, LogLevel.Warning, new EventId(90, "LogLinesDropped"),
                new[] { new KeyValuePair<string, object?>("Dropped", dropped) }, message, null, false)
            : $"{DateTimeOffset.UtcNow:HH:mm:ss} {message}";
    }

    /// <summary>
    /// <paramref name="text"/> with every control character (and the Unicode line and paragraph separators) written as
    /// \uXXXX: a field a device chose (an appliance name, a payment id, a request type) must not start a line of its own
    /// that reads as the server's, for another device or, on a hosted node, another owner. JSON lines are escaped by the
    /// JSON writer.
    /// </summary>
    internal static string Printable(string text)
    {
        // Every line passes here: the common case (nothing to escape) is one vectorized search, no allocation.
        if (text.AsSpan().IndexOfAny(Escaped) < 0) return text;
        var printable = new StringBuilder(text.Length + 16);
        foreach (var c in text)
        {
            if (Escaped.Contains(c)) printable.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
            else printable.Append(c);
        }
        return printable.ToString();
    }

    /// <summary>The C0 and C1 controls, DEL, and the Unicode line and paragraph separators.</summary>
    private static readonly System.Buffers.SearchValues<char> Escaped = System.Buffers.SearchValues.Create(
        [.. Enumerable.Range(0, 0x20).Select(i => (char)i), .. Enumerable.Range(0x7f, 0x21).Select(i => (char)i), '\u2028', '\u2029']);

    private sealed class Category(string name, StderrLog log) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel)) return;
            var now = DateTimeOffset.UtcNow;
            if (!log._json)
            {
                var line = Printable(formatter(state, exception));
                // The stack trace's own lines, each marked as the continuation of this one, none able to pass for a line of its own.
                if (exception is not null && log._debug) line += string.Concat(exception.ToString().Split('\n').Select(l => Environment.NewLine + "  | " + Printable(l.TrimEnd('\r'))));
                else if (exception is not null) line += Printable($": {exception.GetType().Name}: {exception.Message}");
                log._lines.Add($"{now:HH:mm:ss} {line}");
                return;
            }
            log._lines.Add(JsonLine(name, now, logLevel, eventId, state, formatter(state, exception), exception, log._debug));
        }

        public static string JsonLine<TState>(string name, DateTimeOffset now, LogLevel level, EventId eventId, TState state, string message, Exception? exception, bool debug)
        {
            using var buffer = new MemoryStream();
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();
                w.WriteString("time", now.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture));
                w.WriteString("level", level.ToString().ToLowerInvariant());
                w.WriteString("category", name);
                if (eventId.Name is { } eventName) w.WriteString("event", eventName);
                w.WriteNumber("event_id", eventId.Id);
                w.WriteString("message", message);
                if (state is IReadOnlyList<KeyValuePair<string, object?>> fields && fields.Any(f => f.Key != "{OriginalFormat}"))
                {
                    w.WriteStartObject("fields");
                    foreach (var (key, value) in fields)
                    {
                        if (key == "{OriginalFormat}") continue;
                        var field = SnakeCase(key);
                        switch (value)
                        {
                            case null: w.WriteNull(field); break;
                            case int or long or short or byte or uint or ulong: w.WriteNumber(field, Convert.ToInt64(value, CultureInfo.InvariantCulture)); break;
                            case double or float or decimal: w.WriteNumber(field, Convert.ToDouble(value, CultureInfo.InvariantCulture)); break;
                            case bool b: w.WriteBoolean(field, b); break;
                            default: w.WriteString(field, Convert.ToString(value, CultureInfo.InvariantCulture)); break;
                        }
                    }
                    w.WriteEndObject();
                }
                if (exception is not null)
                {
                    w.WriteString("exception", $"{exception.GetType().Name}: {exception.Message}");
                    if (debug) w.WriteString("stack", exception.ToString());
                }
                w.WriteEndObject();
            }
            return Encoding.UTF8.GetString(buffer.ToArray());
        }

        /// <summary>DeviceId → device_id.</summary>
        private static string SnakeCase(string name)
        {
            var s = new StringBuilder(name.Length + 4);
            foreach (var ch in name)
            {
                if (char.IsUpper(ch) && s.Length > 0) s.Append('_');
                s.Append(char.ToLowerInvariant(ch));
            }
            return s.ToString();
        }
    }
}
