using System.CommandLine;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko terminal enroll, unlock, lock, get, forward</c>.</summary>
internal static class TerminalCommands
{
    public static void AddTo(Command parent)
    {
    }
}
