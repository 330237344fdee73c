using System.CommandLine;
using System.Text.Json;

namespace Daiko.Cli;

/// <summary>
/// Results: a sentence or a small table for a person by default; with --json one JSON object on one
/// line (snake_case fields, times in ISO 8601 UTC), never a bare array.
/// </summary>
internal static class CliOutput
{
    public static Option<bool> JsonOption() => new("--json") { Description = "print the result as one JSON object" };

    public static void Print(bool json, object result, string human)
    {
        if (json) Console.WriteLine(JsonSerializer.Serialize(result));
        else if (human.Length > 0) Console.WriteLine(human);
    }
}
