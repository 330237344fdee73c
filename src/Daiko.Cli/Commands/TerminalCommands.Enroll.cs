using System.CommandLine;
using Daiko.Cards;
using Daiko.Protocol;
using Daiko.Terminal;

namespace Daiko.Cli.Commands;

internal static partial class TerminalCommands
{
    private static Command Enroll()
    {
        var command = new Command("enroll", $"Enroll this terminal with a home server using the code from 'daiko home device add'; reads the new access-card PIN. {CliHelp.AccessPinRules}")
            .WithExamples("printf '%s\\n' \"$code\" 432100 | daiko terminal enroll --terminal ~/.daiko --home home.example:7443",
                "printf '%s\\n' \"$uri\" 432100 | daiko terminal enroll --terminal ~/.daiko --uri -");
        var terminal = TerminalOption(mustExist: false);
        var home = new Option<string>("--home") { Description = "where the home server listens (its --listen)" }.HostPort();
        var code = new Option<string?>("--code")
        {
            Description = "the one-time enrollment code; '-' or left out: read first from standard input (a code on the command line is visible to other users)",
            HelpName = "CODE",
        };
        var uri = new Option<string>("--uri")
        {
            Description = "daiko-enroll://HOST:PORT/CODE: the home server and the code in one (the owner's console shows it as a QR code); '-': read first from standard input (on the command line it is visible to other users)",
            HelpName = "ENROLLMENT-URI",
        };
        var module = new Option<string?>("--pkcs11-module")
        {
            Description = "keep the device key on a PKCS#11 token (a smart card) instead of an encrypted file; the token must exist, its user PIN being the access-card PIN",
        };
        var label = new Option<string?>("--token-label") { Description = "the token's label (with --pkcs11-module)" };
        var json = CliOutput.JsonOption();
        var stats = TerminalStats.Option();
        foreach (var o in new Option[] { terminal, home, code, uri, module, label, json, stats }) command.Options.Add(o);
        command.Validators.Add(result =>
        {
            if (result.GetValue(uri) is { } given)
            {
                if (result.GetValue(home) is not null || result.GetValue(code) is not null) result.AddError("--uri carries the home address and the code: give it instead of --home and --code");
                try { if (given != "-") EnrollmentUri.Parse(given); }
                catch (FormatException e) { result.AddError("--uri: " + e.Message); }
            }
            else if (result.GetValue(home) is null)
            {
                result.AddError("give --home HOST:PORT (the code is read from standard input, or --code CODE), or --uri daiko-enroll://HOST:PORT/CODE");
            }
            if ((result.GetValue(module) is null) != (result.GetValue(label) is null)) result.AddError("--pkcs11-module and --token-label go together");
        });
        command.SetAction(async (parse, ct) =>
        {
            string homeAddress, enrollmentCode;
            try
            {
                (homeAddress, enrollmentCode) = parse.GetValue(uri) is { } link
                    ? EnrollmentUri.Parse(link == "-" ? CliConsole.ReadSecret("enrollment URI") : link)
                    : (parse.GetValue(home)!, parse.GetValue(code) is { } given and not "-" ? given : CliConsole.ReadSecret("enrollment code"));
            }
            catch (FormatException e)
            {
                return CliConsole.Fail("--uri: " + e.Message);
            }
            if (parse.GetValue(code) is not (null or "-"))
            {
                Console.Error.WriteLine("daiko: warning: --code on the command line is visible to other users of this machine (ps, /proc); leave it out, or give '--code -', to read it from standard input");
            }
            if (parse.GetValue(uri) is not (null or "-"))
            {
                Console.Error.WriteLine("daiko: warning: --uri on the command line is visible to other users of this machine (ps, /proc) with its code; give '--uri -' to read it from standard input");
            }
            var pin = parse.GetValue(module) is null ? CliConsole.ReadNewSecret("new access-card PIN") : CliConsole.ReadSecret("access-card PIN (the token's user PIN)");
            var token = parse.GetValue(module) is { } so ? new AccessCardToken(so, parse.GetValue(label)!) : null;
            var dir = parse.GetValue(terminal)!;
            var created = !Directory.Exists(dir);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var control = new Daiko.Tls.TlsCounters();
            try
            {
                var profile = await TerminalClient.EnrollAsync(parse.GetValue(terminal)!, homeAddress, enrollmentCode, pin, cancellationToken: ct, token: token, counters: control);
                CliOutput.Print(parse.GetValue(json), new { name = profile.Name, device_id = profile.DeviceId, home = profile.Home, key_on_token = token?.TokenLabel },
                    $"enrolled as '{profile.Name}' ({profile.DeviceId}) with the home server at {profile.Home}" +
                    (token is null ? "" : $"; the device key was generated on the token '{token.TokenLabel}' and cannot leave it"));
                // Enrollment runs its control channel in this process: the CLI's own counts are the whole cost.
                if (parse.GetValue(stats)) Console.Error.WriteLine(TerminalStats.CommandLine(control, clock.Elapsed));
                return 0;
            }
            catch (Exception e) when (e is ControlErrorException or FormatException or IOException or InvalidOperationException or ArgumentException
                or System.Security.Authentication.AuthenticationException or System.Net.Sockets.SocketException or Net.Pkcs11Interop.Common.Pkcs11Exception)
            {
                // A failed enrollment leaves nothing behind: not even the directory it made.
                if (created && Directory.Exists(dir) && !Directory.EnumerateFileSystemEntries(dir).Any()) Directory.Delete(dir);
                return CliConsole.Fail(e);
            }
        });
        return command;
    }
}
