using System.CommandLine;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko tls …</c>: direct TLS 1.3 without delegation (the baseline).</summary>
internal static class TlsCommands
{
    public static Command Build()
    {
        var tls = new Command("tls", "Direct TLS 1.3 through Daiko's own engine, without delegation.");
        return tls;
    }
}
