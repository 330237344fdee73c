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
