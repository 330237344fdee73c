namespace Daiko.Cli;

/// <summary>Shared terminal I/O: errors as one sentence on stderr, PINs from stdin without echo.</summary>
internal static class CliConsole
{
    /// <summary>Exit code for a failure the user can act on.</summary>
    public const int Failure = 1;

    /// <summary>Exit code for bad usage.</summary>
    public const int Usage = 2;

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
    public static string ReadSecret(string prompt)
    {
        if (Console.IsInputRedirected)
        {
            return Console.In.ReadLine() ?? throw new InvalidOperationException($"expected {prompt} on standard input, got end of input");
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
