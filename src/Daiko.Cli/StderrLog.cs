using Microsoft.Extensions.Logging;

namespace Daiko.Cli;

/// <summary>The home server's log lines on stderr, one a line with the UTC time (as 'daiko home serve' always printed them).</summary>
internal sealed class StderrLog : ILoggerFactory, ILogger
{
    public ILogger CreateLogger(string categoryName) => this;

    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException("the CLI logs to stderr only");

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel)) return;
        var line = formatter(state, exception);
        if (exception is not null && Environment.GetEnvironmentVariable("DAIKO_DEBUG") == "1") line += Environment.NewLine + exception;
        else if (exception is not null) line += $": {exception.GetType().Name}: {exception.Message}";
        Console.Error.WriteLine($"{DateTimeOffset.UtcNow:HH:mm:ss} {line}");
    }

    public void Dispose() { }
}
