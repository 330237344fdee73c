using Microsoft.Extensions.Logging;

namespace Daiko.Demo;

/// <summary>
/// The demo's home server log: one line per event, with the UTC time, in ROOT/home.log (kept with
/// --keep). When a step fails the demo prints the last lines, so a failure says what the server saw.
/// </summary>
internal sealed class DemoLog(string path) : ILoggerFactory, ILogger
{
    private readonly Lock _gate = new();

    public string Path { get; } = path;

    public ILogger CreateLogger(string categoryName) => this;

    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException("the demo logs to its own file only");

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Debug;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel)) return;
        var line = $"{DateTimeOffset.UtcNow:HH:mm:ss.fff} {formatter(state, exception)}";
        if (exception is not null) line += $": {exception.GetType().Name}: {exception.Message}";
        lock (_gate) File.AppendAllText(Path, line + Environment.NewLine);
    }

    /// <summary>The last <paramref name="count"/> lines written so far.</summary>
    public IReadOnlyList<string> Tail(int count)
    {
        lock (_gate) return File.Exists(Path) ? File.ReadLines(Path).TakeLast(count).ToList() : [];
    }

    public void Dispose() { }
}
