using System.CommandLine;
using Daiko.Cards;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko terminal pin change</c>: a new access-card PIN, for a file-backed or a PKCS#11 access card.</summary>
internal static class TerminalPinCommands
{
    public static Command Pin()
    {
        var pin = new Command("pin", "Manage the access-card PIN.")
            .WithExamples("printf '%s\\n' 432100 865432 | daiko terminal pin change --terminal ~/.daiko");
        var change = new Command("change",
            "Change the access-card PIN: the old PIN, then the new one on stdin, one a line (asked twice on a terminal). " +
            "A file-backed card needs at least 6 characters and is re-encrypted under freshly calibrated Argon2id; a token card changes the token's user PIN.")
            .WithExamples("printf '%s\\n' 432100 865432 | daiko terminal pin change --terminal ~/.daiko",
                "daiko terminal pin change --terminal ~/.daiko     # asks for the old PIN, then the new one twice");
        var terminal = TerminalCommands.TerminalOption();
        var stats = TerminalStats.Option();
        var json = CliOutput.JsonOption();
        foreach (var o in new Option[] { terminal, stats, json }) change.Options.Add(o);
        change.SetAction(parse =>
        {
            var dir = parse.GetValue(terminal)!;
            AccessCard card;
            try { card = AccessCard.Open(dir); }
            catch (FileNotFoundException e) { return CliConsole.Fail(e.Message); }
            using (card)
            {
                var oldPin = CliConsole.ReadSecret("current access-card PIN");
                var newPin = CliConsole.ReadSecret("new access-card PIN");
                if (!Console.IsInputRedirected && CliConsole.ReadSecret("new access-card PIN again") != newPin)
                {
                    return CliConsole.Fail("the two new PINs differ; nothing was changed");
                }
                var clock = System.Diagnostics.Stopwatch.StartNew();
                try
                {
                    var result = card.ChangePin(oldPin, newPin);
                    if (!result.Accepted) return CliConsole.Fail(result.Message);
                    CliOutput.Print(parse.GetValue(json), new { changed = true, storage = card.Storage }, result.Message);
                    // A PIN change stays on the terminal: no control channel, no public-key operation.
                    if (parse.GetValue(stats)) Console.Error.WriteLine(TerminalStats.CommandLine(new Daiko.Tls.TlsCounters(), clock.Elapsed));
                    return 0;
                }
                catch (Exception e) when (e is ArgumentException or CardNotReadyException or Net.Pkcs11Interop.Common.Pkcs11Exception)
                {
                    return CliConsole.Fail(e);
                }
            }
        });
        pin.Subcommands.Add(change);
        return pin;
    }
}
