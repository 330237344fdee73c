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
        var rounds = new Option<int>("--rounds") { Description = "fetch in every delegation mode N times over the same control channel (a soak test)", DefaultValueFactory = _ => 1, HelpName = "N" };
        rounds.Validators.Add(r => { if (r.GetValueOrDefault<int>() is < 1 or > 1000) r.AddError("--rounds must be 1 to 1000"); });
        demo.Options.Add(keep);
        demo.Options.Add(rounds);
        demo.SetAction(async (parse, ct) =>
        {
            // Ctrl-C ends the demo between two steps (or inside one that waits): "interrupted", exit 130.
            using var interrupt = CancellationTokenSource.CreateLinkedTokenSource(ct);
            using var sigint = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, c =>
            {
                c.Cancel = true;
                interrupt.Cancel();
            });
            try
            {
                return await DemoRun.RunAsync(parse.GetValue(keep), parse.GetValue(rounds), interrupt.Token) is { } failure ? CliConsole.Fail(failure) : 0;
            }
            catch (OperationCanceledException) when (interrupt.IsCancellationRequested)
            {
                Console.Error.WriteLine("daiko: interrupted");
                return 130;
            }
        });
        return demo;
    }
}
