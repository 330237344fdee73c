using System.CommandLine;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko terminal wallet</c>.</summary>
internal static class WalletCommands
{
    public static void AddTo(Command parent)
    {
    }
}
