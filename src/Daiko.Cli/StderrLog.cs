using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Daiko.Cli;

/// <summary>
/// The home server's log lines on stderr, one a line: plain (the UTC time and the sentence, as
/// 'daiko home serve' always printed them) or JSON (<c>--log-format json</c>: one object a line with
/// the time, level, category, event, sentence and the sentence's named fields). Every line comes from
/// a LoggerMessage template, whose fields never hold a PIN, key, ticket or secret.
/// </summary>
internal sealed class StderrLog(bool json = false) : ILoggerFactory
{
    public ILogger CreateLogger(string categoryName) => new Category(categoryName, json);

    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException("the CLI logs to stderr only");

    public void Dispose() { }

    private sealed class Category(string name, bool json) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel)) return;
            var debug = Environment.GetEnvironmentVariable("DAIKO_DEBUG") == "1";
            var now = DateTimeOffset.UtcNow;
            if (!json)
            {
                var line = formatter(state, exception);
                if (exception is not null && debug) line += Environment.NewLine + exception;
                else if (exception is not null) line += $": {exception.GetType().Name}: {exception.Message}";
                Console.Error.WriteLine($"{now:HH:mm:ss} {line}");
                return;
            }
            Console.Error.WriteLine(JsonLine(now, logLevel, eventId, state, formatter(state, exception), exception, debug));
        }

        private string JsonLine<TState>(DateTimeOffset now, LogLevel level, EventId eventId, TState state, string message, Exception? exception, bool debug)
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
