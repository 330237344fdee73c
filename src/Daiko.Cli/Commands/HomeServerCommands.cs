using System.CommandLine;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko home serve, home device, home trust</c>.</summary>
internal static class HomeServerCommands
{
    public static void AddTo(Command parent)
    {
    }
}
