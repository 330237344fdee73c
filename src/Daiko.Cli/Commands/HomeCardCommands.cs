using System.CommandLine;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko home init, home cert, home card</c>.</summary>
internal static class HomeCardCommands
{
    public static void AddTo(Command parent)
    {
    }
}
