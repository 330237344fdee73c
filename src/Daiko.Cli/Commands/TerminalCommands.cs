using System.CommandLine;
using System.Diagnostics;
using Daiko.Cards;
using Daiko.Protocol;
using Daiko.Terminal;
using Daiko.Terminal.Agent;
using Daiko.Terminal.Forwarding;
using Daiko.Terminal.Http;
using Daiko.Terminal.Sessions;
using Daiko.Tls;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko terminal enroll | unlock | lock | get | forward</c>.</summary>
internal static partial class TerminalCommands
{
    /// <summary>--terminal DIR; unless it is being enrolled, it must already hold an access card.</summary>
    public static Option<string> TerminalOption(bool mustExist = true)
    {
        var option = new Option<string>("--terminal") { Description = mustExist ? "this terminal's directory (made by 'terminal enroll')" : "the new terminal directory", Required = true, HelpName = "DIR" };
        return mustExist ? option.ExistingTerminal() : option.NotAHome();
    }

    public static Option<string> ModeOption() => new Option<string>("--mode")
    {
        Description = "auto (the home server answers in the mode that will work, from what it learned of the market: resume with a ticket when the market issues them, a ticket from the agent's local stock first; handoff when it issues none or is not known yet; relay for a TLS 1.2 market; never a failed attempt first), resume (ticket), handoff (live secrets), relay (home server relays), assist (home card signs)",
        HelpName = "MODE",
        DefaultValueFactory = _ => "auto",
    }.AcceptOnlyFromAmong("auto", "resume", "handoff", "relay", "assist");

    public static void AddTo(Command parent)
    {
        parent.Subcommands.Add(Enroll());
        parent.Subcommands.Add(Unlock());
        parent.Subcommands.Add(Lock());
        parent.Subcommands.Add(Get());
        parent.Subcommands.Add(Prefetch());
        parent.Subcommands.Add(Forward());
        parent.Subcommands.Add(AgentCommand());
        parent.Subcommands.Add(ApplianceCommand());
        parent.Subcommands.Add(TerminalPinCommands.Pin());
    }

    private static Command ApplianceCommand()
    {
        var appliance = new Command("appliance", "Control home appliances through the home server.").WithExamples("daiko terminal appliance list --terminal ~/.daiko");
        var json = CliOutput.JsonOption();
        Command Make(string name, string description, Func<HomeControl, ParseResult, CancellationToken, Task> run, params Option[] extra)
        {
            var command = new Command(name, description);
            var terminal = TerminalOption();
            var stats = TerminalStats.Option();
            command.Options.Add(terminal);
            command.Options.Add(json);
            command.Options.Add(stats);
            foreach (var o in extra) command.Options.Add(o);
            command.SetAction(async (parse, ct) =>
            {
                try
                {
                    var clock = Stopwatch.StartNew();
                    await using var control = await AgentClient.ConnectAsync(parse.GetValue(terminal)!, ct);
                    await run(new HomeControl(control), parse, ct);
                    if (parse.GetValue(stats)) Console.Error.WriteLine(await TerminalStats.CommandLineAsync(control, [], clock.Elapsed, ct));
                    return 0;
                }
                catch (ControlErrorException e)
                {
                    return CliConsole.Fail(e.Message);
                }
            });
            return command;
        }
        var name = new Option<string>("--name") { Description = "the appliance", Required = true };
        var commandOption = new Option<string>("--command") { Description = "the command, e.g. set-target", Required = true };
        var args = new Option<string[]>("--arg") { Description = "KEY=VALUE argument (repeatable)", AllowMultipleArgumentsPerToken = false };
        appliance.Subcommands.Add(Make("list", "List the appliances the home server knows.", async (c, p, ct) =>
        {
            var names = await c.AppliancesAsync(ct);
            CliOutput.Print(p.GetValue(json), new { appliances = names }, string.Join('\n', names));
        }));
        appliance.Subcommands.Add(Make("state", "Show an appliance's state.", async (c, p, ct) =>
        {
            var state = await c.ApplianceStateAsync(p.GetValue(name)!, ct);
            CliOutput.Print(p.GetValue(json), new { name = p.GetValue(name), state = JsonOrText(state) }, state);
        }, name));
        appliance.Subcommands.Add(Make("command", "Send a command to an appliance.", async (c, p, ct) =>
        {
            var pairs = (p.GetValue(args) ?? []).Select(a => a.Split('=', 2)).Where(a => a.Length == 2).Select(a => KeyValuePair.Create(a[0], a[1])).ToList();
            var state = await c.ApplianceCommandAsync(p.GetValue(name)!, p.GetValue(commandOption)!, pairs, ct);
            CliOutput.Print(p.GetValue(json), new { name = p.GetValue(name), command = p.GetValue(commandOption), state = JsonOrText(state) }, state);
        }, name, commandOption, args));
        return appliance;
    }

    /// <summary>An appliance's state as JSON inside the result object (its text when it is not JSON).</summary>
    private static object JsonOrText(string state)
    {
        try
        {
            using var document = System.Text.Json.JsonDocument.Parse(state);
            return document.RootElement.Clone();
        }
        catch (System.Text.Json.JsonException)
        {
            return state;
        }
    }

    private static Command Unlock()
    {
        var command = new Command("unlock", "Unlock the access card and the home card: reads the access-card PIN, PIN1 and PIN2, one a line; starts the terminal agent (it locks again after 10 idle minutes).")
            .WithExamples("printf '%s\\n' 432100 1111 2222 | daiko terminal unlock --terminal ~/.daiko");
        var terminal = TerminalOption();
        var json = CliOutput.JsonOption();
        var stats = TerminalStats.Option();
        command.Options.Add(terminal);
        command.Options.Add(json);
        command.Options.Add(stats);
        command.SetAction(async (parse, ct) =>
        {
            var dir = parse.GetValue(terminal)!;
            var accessPin = CliConsole.ReadSecret("access-card PIN");
            var pin1 = CliConsole.ReadSecret("PIN1");
            var pin2 = CliConsole.ReadSecret("PIN2");
            var clock = Stopwatch.StartNew();
            var startedHere = false;
            try
            {
                if (!AgentClient.IsRunning(dir))
                {
                    var started = await AgentProcess.StartAsync(dir, accessPin, ct);
                    if (started is not null) return CliConsole.Fail(started);
                    startedHere = true;
                }
                else if (AgentProcess.CheckAccessPin(dir, accessPin) is { } refused)
                {
                    return CliConsole.Fail(refused);
                }
                await using var control = await AgentClient.ConnectAsync(dir, ct);
                var state = await new HomeControl(control).UnlockAsync(pin1, pin2, ct);
                CliOutput.Print(parse.GetValue(json), new { state = state.ToWire(), access_card = "unlocked", idle_minutes = 10 },
                    $"home card {state.ToWire()}; the access card stays unlocked for 10 idle minutes");
                // The agent's share includes opening its control channel (the full mutual handshake) when this unlock opened it.
                if (parse.GetValue(stats)) Console.Error.WriteLine(await TerminalStats.CommandLineAsync(control, [], clock.Elapsed, ct));
                return 0;
            }
            catch (ControlErrorException e)
            {
                // A failed unlock leaves no agent holding the access card open.
                if (startedHere) AgentProcess.Stop(dir);
                return CliConsole.Fail(e.Message);
            }
        });
        return command;
    }

    private static Command AgentCommand()
    {
        var command = new Command("agent", "Run the terminal agent in the foreground (started by 'terminal unlock'; access-card PIN from stdin).") { Hidden = true };
        var terminal = TerminalOption();
        command.Options.Add(terminal);
        command.SetAction(async (parse, ct) =>
        {
            // First, before the PIN is read or the key unlocked: from here on only root can read this process's memory
            // (ptrace, /proc/PID/mem), and a crash leaves no core file. Should the kernel refuse, the agent says so and
            // runs on, as it did before it asked: refusing would leave a user whose system forbids prctl without an agent.
            if (AgentMemory.MakeNonDumpable() is { } exposed)
                Console.Error.WriteLine($"daiko: warning: {exposed}; other processes of this user can read the terminal agent's memory");
            var dir = parse.GetValue(terminal)!;
            AccessCard access;
            try { access = AccessCard.Open(dir); }
            catch (FileNotFoundException e) { return CliConsole.Fail(e.Message); }
            var pin = Console.In.ReadLine() ?? "";
            var result = access.Unlock(pin);
            if (!result.Accepted) return CliConsole.Fail(result.Message);
            await using var agent = TerminalAgent.Start(dir, access);
            using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; agent.Stop(); });
            Console.Out.Close();
            await agent.RunAsync(ct);
            return 0;
        });
        return command;
    }

    private static Command Lock()
    {
        var command = new Command("lock", "\"Done\": the home card goes back to remote-access-wait and the access card is locked.")
            .WithExamples("daiko terminal lock --terminal ~/.daiko");
        var terminal = TerminalOption();
        var json = CliOutput.JsonOption();
        var stats = TerminalStats.Option();
        command.Options.Add(terminal);
        command.Options.Add(json);
        command.Options.Add(stats);
        command.SetAction(async (parse, ct) =>
        {
            var dir = parse.GetValue(terminal)!;
            var clock = Stopwatch.StartNew();
            if (!AgentClient.IsRunning(dir))
            {
                CliOutput.Print(parse.GetValue(json), new { state = (string?)null, access_card = "locked" }, "the access card is already locked");
                if (parse.GetValue(stats)) Console.Error.WriteLine(TerminalStats.CommandLine(new TlsCounters(), clock.Elapsed));
                return 0;
            }
            int? agent = null;
            try
            {
                var (control, pid) = await AgentClient.ConnectToAgentAsync(dir, ct);
                agent = pid;
                await using (control)
                {
                    // A stopped or hung agent is not waited for a minute (it is stopped below all the same): it answers a cost
                    // request itself, at once. A live one is then given the time the home server may take over the lock.
                    await control.RequestAsync(new Daiko.Protocol.Messages.CostRequest(), ct, AgentClient.AnswerProbeTimeout);
                    var state = await new HomeControl(control).LockAsync(ct);
                    CliOutput.Print(parse.GetValue(json), new { state = state.ToWire(), access_card = "locked" }, $"home card {state.ToWire()}; access card locked");
                    // The agent ends once this connection closes, so it can still report its share.
                    if (parse.GetValue(stats)) Console.Error.WriteLine(await TerminalStats.CommandLineAsync(control, [], clock.Elapsed, ct));
                }
            }
            catch (ControlErrorException e)
            {
                // Not locked at the home server (an agent that is gone had nothing open there worth saying).
                var home = e.Code == ErrorCode.Locked ? "" : " (this device's session with the home card, if one is open, ends at the home server's idle timeout)";
                Console.Error.WriteLine($"daiko: {e.Message}; locking the access card anyway{home}");
            }
            // The agent this lock spoke to ends by itself; it is waited for (stopped if it lingers) even once its socket is gone.
            if (!AgentProcess.Stop(dir, agent))
            {
                return CliConsole.Fail($"a process listens on {TerminalAgent.SocketPath(dir)} and takes no connection, and it is not known for this terminal's agent (one an older version started?): stop it yourself (the pid in {TerminalAgent.PidPath(dir)}), then lock again");
            }
            return 0;
        });
        return command;
    }

    private static Command Get()
    {
        var command = new Command("get", "Fetch an https URL through a delegated session; the body goes to stdout.")
            .WithExamples("daiko terminal get https://market.example/ --terminal ~/.daiko --mode auto --stats", "daiko terminal get https://market.example/ --terminal ~/.daiko --mode resume --kex auto");
        var terminal = TerminalOption();
        var url = new Argument<string>("URL") { Description = "the https URL" }.HttpsUrl();
        var mode = ModeOption();
        var kex = new Option<string>("--kex") { Description = "the key exchange when resuming (resume and auto modes): psk_dhe_ke (default: one ECDHE, and the session stays secret even if the ticket later leaks), psk_ke (no public-key operation on the terminal, no forward secrecy; a market that refuses it refuses the ticket, and --mode auto then hands the session off), or auto: psk_ke where the home server found the market accepts it, else psk_dhe_ke, and psk_dhe_ke with the same ticket if the market refuses psk_ke after all", DefaultValueFactory = _ => "psk_dhe_ke", HelpName = "KEX" };
        kex.AcceptOnlyFromAmong("auto", "psk_ke", "psk_dhe_ke");
        var earlyData = new Option<bool>("--early-data") { Description = "send the request as 0-RTT data when the ticket allows it (resume mode)" };
        var stats = TerminalStats.Option();
        var timeout = new Option<int>("--timeout") { Description = "seconds the session's handshake, and then each read or write, may wait on the market", DefaultValueFactory = _ => 30 }.Seconds(1, 3600);
        var maxTime = new Option<int?>("--max-time") { Description = "seconds the whole fetch may take, however the market trickles its answer (as curl's --max-time; default: no limit beyond --timeout's)", HelpName = "SECONDS" };
        var connectTo = new Option<string>("--connect-to") { HelpName = "HOST:PORT",
            Description = "open the terminal's own connection to the market at HOST:PORT instead of the URL's (as curl's --connect-to; the home server still uses the URL's, and the name checked is the URL's)" }.HostPort();
        command.Arguments.Add(url);
        foreach (var o in new Option[] { terminal, mode, kex, earlyData, stats, timeout, maxTime, connectTo }) command.Options.Add(o);
        command.Validators.Add(r =>
        {
            // A --kex or --mode value of its own that is wrong is said by that option; this is about the two together.
            // (Read as typed: a value an option refuses is not read through it, which would throw.)
            var kexText = r.GetResult(kex) is { Implicit: false } given ? given.Tokens.LastOrDefault()?.Value : null;
            var chosen = r.GetResult(mode)?.Tokens.LastOrDefault()?.Value ?? "auto";
            if (kexText is "auto" or "psk_ke" or "psk_dhe_ke" && chosen is "handoff" or "relay" or "assist")
            {
                r.AddError($"--kex applies to resume and auto modes only, not to --mode {chosen}");
            }
        });
        command.SetAction(async (parse, interrupted) =>
        {
            if (!Uri.TryCreate(parse.GetValue(url), UriKind.Absolute, out var target) || target.Scheme != Uri.UriSchemeHttps) return CliConsole.Fail("only https URLs are supported");
            if (parse.GetValue(timeout) is < 1 or > 3600) return CliConsole.Fail("--timeout must be 1 to 3600 seconds");
            if (parse.GetValue(maxTime) is < 1 or > 86400) return CliConsole.Fail("--max-time must be 1 to 86400 seconds");
            var seconds = TimeSpan.FromSeconds(parse.GetValue(timeout));
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(interrupted);
            if (parse.GetValue(maxTime) is { } most) deadline.CancelAfter(TimeSpan.FromSeconds(most));
            var ct = deadline.Token;
            var clock = Stopwatch.StartNew();
            var sessionMode = Enum.Parse<DelegationMode>(parse.GetValue(mode)!, ignoreCase: true);
            var request = HttpGet.Request(target);
            try
            {
                using var waiting = CliConsole.ProgressAfter(TimeSpan.FromSeconds(2), $"{target.Authority} has not answered within 2 s; still waiting (Ctrl-C to give up)");
                await using var control = await AgentClient.ConnectAsync(parse.GetValue(terminal)!, ct);
                var route = parse.GetValue(connectTo) is { } via ? via : null;
                var routeColon = route?.LastIndexOf(':') ?? -1;
                var session = await new DelegatedConnector(control)
                {
                    Timeout = seconds,
                    TerminalRoute = route is null ? null
                        : (_, _) => (route[..routeColon].Trim('[', ']'), int.Parse(route[(routeColon + 1)..], System.Globalization.CultureInfo.InvariantCulture)),
                }.ConnectAsync(target.Host, target.Port, sessionMode,
                    parse.GetValue(kex) switch { "psk_ke" => PskKeyExchangeMode.PskKe, "psk_dhe_ke" => PskKeyExchangeMode.PskDheKe, _ => null },
                    parse.GetValue(earlyData) ? request : default, cancellationToken: ct);
                await using var stream = session.Stream;
                if (session.Tls is not { EarlyDataAccepted: true }) await stream.WriteAsync(request, ct);
                var response = await HttpResponseReader.ReadBodyAsync(stream, ct);
                waiting.Dispose();
                await using (var stdout = Console.OpenStandardOutput()) await stdout.WriteAsync(response.Body, ct);
                if (parse.GetValue(stats)) Console.Error.WriteLine(await TerminalStats.LineAsync(control, session, clock.Elapsed, ct));
                return response.StatusCode is >= 200 and < 400 ? 0 : CliConsole.Fail($"the market answered HTTP {response.StatusCode}");
            }
            catch (Exception e) when (e is OperationCanceledException || e.InnerException is OperationCanceledException)
            {
                if (interrupted.IsCancellationRequested) throw;
                return CliConsole.Fail($"the fetch from {target.Authority} took longer than --max-time {parse.GetValue(maxTime)} s; stopped");
            }
            catch (ControlErrorException e)
            {
                return CliConsole.Fail(e.Message);
            }
            catch (System.Net.Sockets.SocketException e)
            {
                return CliConsole.Fail(CliConsole.Unreachable(target.Authority, e));
            }
            catch (Exception e) when (CliConsole.IsSessionFailure(e))
            {
                return CliConsole.FailSession(target.Authority, e);
            }
        });
        return command;
    }

    private static Command Prefetch()
    {
        var command = new Command("prefetch", "Fill the terminal agent's local stock of session tickets for a market (kept in the agent's memory only, until lock), so that later 'get --mode resume' or auto sends nothing to the home server before it connects to the market.")
            .WithExamples("daiko terminal prefetch https://market.example/ --terminal ~/.daiko --count 2");
        var terminal = TerminalOption();
        var url = new Argument<string>("URL") { Description = "an https URL of the market" }.HttpsUrl();
        var count = new Option<int>("--count") { Description = "how many tickets to have in the local stock, 0 to 8 (at most 4 are kept per market; 0 only reports)", DefaultValueFactory = _ => 1, HelpName = "N" };
        count.Validators.Add(r => { if (r.GetValueOrDefault<int>() is < 0 or > 8) r.AddError("--count must be 0 to 8"); });
        var json = CliOutput.JsonOption();
        var stats = TerminalStats.Option();
        command.Arguments.Add(url);
        foreach (var o in new Option[] { terminal, count, json, stats }) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            if (!Uri.TryCreate(parse.GetValue(url), UriKind.Absolute, out var target) || target.Scheme != Uri.UriSchemeHttps) return CliConsole.Fail("only https URLs are supported");
            if (parse.GetValue(count) is < 0 or > 8) return CliConsole.Fail("--count must be 0 to 8");
            try
            {
                var clock = Stopwatch.StartNew();
                await using var control = await AgentClient.ConnectAsync(parse.GetValue(terminal)!, ct);
                var (ready, handshakes) = await new DelegatedConnector(control).PrefetchAsync(target.Host, target.Port, parse.GetValue(count), cancellationToken: ct);
                CliOutput.Print(parse.GetValue(json), new { market = target.Authority, ready, handshakes },
                    $"{ready} session ticket(s) ready for {target.Authority} ({handshakes} handshake(s) by the home server now), in the terminal agent's memory");
                if (parse.GetValue(stats)) Console.Error.WriteLine(await TerminalStats.CommandLineAsync(control, [], clock.Elapsed, ct));
                return 0;
            }
            catch (ControlErrorException e)
            {
                return CliConsole.Fail(e.Message);
            }
        });
        return command;
    }

    private static Command Forward()
    {
        var command = new Command("forward", "Serve a local plaintext port; each connection becomes a delegated session to the target (like ghostunnel's client mode).")
            .WithExamples("daiko terminal forward --terminal ~/.daiko --listen 127.0.0.1:8080 --target market.example:443   # then: curl http://127.0.0.1:8080/");
        var terminal = TerminalOption();
        var listen = new Option<string>("--listen") { Description = "the local address for plaintext clients", Required = true }.HostPort();
        var target = new Option<string>("--target") { Description = "the market", Required = true }.HostPort();
        var mode = ModeOption();
        var stats = new Option<bool>("--stats") { Description = "print one JSON line to stderr as each forwarded connection closes: its whole cost (market and control channel, CLI and agent)" };
        var allowOthers = new Option<bool>("--allow-others") { Description = "serve every connection, not only this user's: other users of this machine, and with a non-loopback --listen other machines, then use the market as the owner" };
        foreach (var o in new Option[] { terminal, listen, target, mode, stats, allowOthers }) command.Options.Add(o);
        command.Validators.Add(r =>
        {
            // (Read as typed: a --listen its own check refuses is said by that check.)
            if (r.GetResult(allowOthers) is { Implicit: false } || r.GetResult(listen)?.Tokens.LastOrDefault()?.Value is not { } text) return;
            var colon = text.LastIndexOf(':');
            if (colon > 0 && System.Net.IPAddress.TryParse(text[..colon].Trim('[', ']'), out var address) && !System.Net.IPAddress.IsLoopback(address))
            {
                r.AddError($"--listen {text} is not a loopback address: every machine that reaches it would use the market as the owner; listen on 127.0.0.1, or pass --allow-others to mean it");
            }
        });
        command.SetAction(async (parse, ct) =>
        {
            var dir = parse.GetValue(terminal)!;
            var targetText = parse.GetValue(target)!;
            var colon = targetText.LastIndexOf(':');
            var host = targetText[..colon].Trim('[', ']');
            var port = int.Parse(targetText[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            var sessionMode = Enum.Parse<DelegationMode>(parse.GetValue(mode)!, ignoreCase: true);
            using var log = new StderrLog();
            LocalForwarder forwarder;
            try
            {
                forwarder = LocalForwarder.Start(HomeServerCommands.ParseEndpoint(parse.GetValue(listen)!), async c =>
                {
                    var clock = Stopwatch.StartNew();
                    var control = await AgentClient.ConnectAsync(dir, c);
                    var session = await new DelegatedConnector(control).ConnectAsync(host, port, sessionMode, cancellationToken: c);
                    return new OwningStream(session.Stream, control, !parse.GetValue(stats) ? null : async () =>
                        Console.Error.WriteLine(await TerminalStats.CommandLineAsync(control, [session], clock.Elapsed, CancellationToken.None)));
                }, log.CreateLogger("forward"), parse.GetValue(allowOthers));
            }
            catch (ArgumentException e)
            {
                return CliConsole.Fail($"--listen {parse.GetValue(listen)}: {e.Message}");
            }
            catch (System.Net.Sockets.SocketException e)
            {
                return CliConsole.Fail(HomeServerCommands.ListenProblem(parse.GetValue(listen)!, e));
            }
            await using var forwarderScope = forwarder;
            Console.WriteLine($"forwarding {forwarder.LocalEndPoint} → {targetText} ({sessionMode.ToString().ToLowerInvariant()})");
            var stop = new TaskCompletionSource();
            using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
            using var sigint = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
            await Task.WhenAny(stop.Task, Task.Delay(Timeout.Infinite, ct));
            return 0;
        });
        return command;
    }
}
