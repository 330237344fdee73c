namespace Daiko.Cli;

/// <summary>Shared terminal I/O: errors as one sentence on stderr, PINs from stdin without echo.</summary>
internal static class CliConsole
{
    /// <summary>Exit code for a failure the user can act on.</summary>
    public const int Failure = 1;

    /// <summary>Exit code for bad usage.</summary>
    public const int Usage = 2;

    /// <summary>An exception's message as a sentence: without .NET's " (Parameter 'x')" suffix.</summary>
    public static string Sentence(Exception e) =>
        e is ArgumentException { ParamName: { } name } ? e.Message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal) : e.Message;

    public static int Fail(Exception e) => Fail(Sentence(e));

    /// <summary>"cannot reach HOST:PORT" with the reason in words.</summary>
    public static string Unreachable(string where, System.Net.Sockets.SocketException e) => e.SocketErrorCode switch
    {
        System.Net.Sockets.SocketError.ConnectionRefused => $"cannot reach {where}: nothing is listening there (connection refused)",
        System.Net.Sockets.SocketError.HostNotFound or System.Net.Sockets.SocketError.NoData => $"cannot reach {where}: no such host",
        System.Net.Sockets.SocketError.TimedOut => $"cannot reach {where}: the connection timed out",
        System.Net.Sockets.SocketError.NetworkUnreachable or System.Net.Sockets.SocketError.HostUnreachable => $"cannot reach {where}: no route to it",
        _ => $"cannot reach {where}: {e.Message}",
    };

    /// <summary>After <paramref name="after"/> without being disposed, says on stderr what is still awaited (one line).</summary>
    public static IDisposable ProgressAfter(TimeSpan after, string line) => new Progress(after, line);

    private sealed class Progress : IDisposable
    {
        private readonly Lock _gate = new();
        private readonly Timer _timer;
        private bool _done;

        public Progress(TimeSpan after, string line) => _timer = new Timer(_ =>
        {
            lock (_gate) if (!_done) Console.Error.WriteLine($"daiko: {line}");
        }, null, after, Timeout.InfiniteTimeSpan);

        public void Dispose()
        {
            lock (_gate) _done = true;
            _timer.Dispose();
        }
    }

    public static int Fail(string sentence)
    {
        Console.Error.WriteLine($"daiko: {sentence}");
        return Failure;
    }

    /// <summary>
    /// A failure a market (or the path to it) can cause once a session is up: TLS errors including a
    /// timeout or a close without close_notify, broken HTTP framing, a reset transport. These are
    /// expected and exit 1; anything else is a bug and reaches the catch-all (exit 70).
    /// </summary>
    public static bool IsSessionFailure(Exception e) =>
        e is Daiko.Tls.TlsException or InvalidDataException or IOException or System.Net.Sockets.SocketException;

    /// <summary>The one sentence for a <see cref="IsSessionFailure"/> exception.</summary>
    public static int FailSession(string authority, Exception e) => Fail(e switch
    {
        Daiko.Tls.TlsException { Error: Daiko.Tls.TlsError.Truncated } =>
            "the market closed the connection without close_notify: the response may be truncated",
        Daiko.Tls.TlsException { Error: Daiko.Tls.TlsError.Timeout } t => $"{authority} timed out: {t.Message}",
        InvalidDataException => $"the response from {authority} is not valid HTTP/1.1: {e.Message}",
        _ => $"the connection to {authority} failed: {e.Message}",
    });

    /// <summary>
    /// Reads one secret line. With redirected stdin (scripts, <c>--pin-stdin</c>) reads a plain line;
    /// on a terminal prompts on stderr and does not echo.
    /// </summary>
    /// <summary>
    /// Reads a new secret: from redirected stdin one line; on a terminal twice, and refuses two entries
    /// that differ (a typo in a new PIN would otherwise lock its owner out).
    /// </summary>
    public static string ReadNewSecret(string prompt)
    {
        var first = ReadSecret(prompt);
        if (Console.IsInputRedirected) return first;
        if (ReadSecret($"{prompt} again") != first) throw new CliInputException($"the two entries of the {prompt} differ; nothing was changed");
        return first;
    }

    public static string ReadSecret(string prompt)
    {
        if (Console.IsInputRedirected)
        {
            return Console.In.ReadLine() ?? throw new CliInputException($"expected the {prompt} on standard input (one a line), but the input ended");
        }
        Console.Error.Write($"{prompt}: ");
        var chars = new System.Text.StringBuilder();
        while (true)
        {
            var key = Console.ReadKey(intercept: true);
            if (key.Key == ConsoleKey.Enter) break;
            if (key.Key == ConsoleKey.Backspace) { if (chars.Length > 0) chars.Length--; continue; }
            chars.Append(key.KeyChar);
        }
        Console.Error.WriteLine();
        return chars.ToString();
    }
}

/// <summary>Standard input ended before every expected secret was read (bad usage: exit 2).</summary>
internal sealed class CliInputException(string message) : Exception(message);

/// <summary>A mistake in what the user typed, found after parsing (exit 2).</summary>
internal sealed class CliUsageException(string message) : Exception(message);
