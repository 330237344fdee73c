using System.CommandLine;
using Daiko.Demo;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko demo</c>: runs samples/Daiko.Demo, the whole system on loopback with embedded defaults.</summary>
internal static class DemoCommand
{
    public static Command Build()
    {
        var demo = new Command("demo", "Run a home server (SoftHSM2 home card), a sample market and a terminal on loopback; fetch from the market in every delegation mode and print the terminal's cost per mode against a direct handshake. Exits 0 only if every step worked.");
        var keep = new Option<bool>("--keep") { Description = "keep the demo's directory (printed) instead of deleting it" };
        demo.Options.Add(keep);
        demo.SetAction(async (parse, ct) => await DemoRun.RunAsync(parse.GetValue(keep), ct) is { } failure ? CliConsole.Fail(failure) : 0);
        return demo;
    }
}
