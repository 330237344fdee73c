using System.CommandLine;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko demo</c>: the whole system on loopback with embedded defaults.</summary>
internal static class DemoCommand
{
    public static Command Build()
    {
        var demo = new Command("demo", "Run home server, market, bank and mail sink on loopback and exercise every feature.");
        return demo;
    }
}
