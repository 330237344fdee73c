using System.CommandLine;
using System.Diagnostics;
using Daiko.Cards;
using Daiko.Home.Control;
using Daiko.Terminal;
using Daiko.Terminal.Agent;
using Daiko.Terminal.Forwarding;
using Daiko.Terminal.Http;
using Daiko.Terminal.Sessions;
using Daiko.Tls;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko terminal enroll | unlock | lock | get | forward</c>.</summary>
internal static class TerminalCommands
{
    public static Option<string> TerminalOption() => new("--terminal") { Description = "this terminal's directory", Required = true };

    public static Option<string> ModeOption() => new Option<string>("--mode")
    {
        Description = "auto (cheapest the market supports), resume (ticket), handoff (live secrets), relay (home server relays), assist (home card signs)",
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
        var appliance = new Command("appliance", "Control home appliances through the home server (F16).");
        Command Make(string name, string description, Func<ControlConnection, ParseResult, CancellationToken, Task> run, params Option[] extra)
        {
            var command = new Command(name, description);
            var terminal = TerminalOption();
            command.Options.Add(terminal);
            foreach (var o in extra) command.Options.Add(o);
            command.SetAction(async (parse, ct) =>
            {
                try
                {
                    await using var control = await AgentClient.ConnectAsync(parse.GetValue(terminal)!, ct);
                    await run(control, parse, ct);
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
            foreach (var n in (await c.RequestAsync(new ControlMessage("appliance-list"), ct)).GetList("names").OfType<string>()) Console.WriteLine(n);
        }));
        appliance.Subcommands.Add(Make("state", "Show an appliance's state.", async (c, p, ct) =>
            Console.WriteLine((await c.RequestAsync(new ControlMessage("appliance-state").Set("name", p.GetValue(name)), ct)).GetString("state")), name));
        appliance.Subcommands.Add(Make("command", "Send a command to an appliance.", async (c, p, ct) =>
        {
            var pairs = (p.GetValue(args) ?? []).Select(a => a.Split('=', 2)).Where(a => a.Length == 2).Select(a => (object)new List<object> { a[0], a[1] }).ToList();
            Console.WriteLine((await c.RequestAsync(new ControlMessage("appliance-command").Set("name", p.GetValue(name)).Set("command", p.GetValue(commandOption)).Set("arguments", pairs), ct)).GetString("state"));
        }, name, commandOption, args));
        return appliance;
    }

    private static Command Enroll()
    {
        var command = new Command("enroll", "Enroll this terminal with a home server using the code from 'daiko home device add' (access-card PIN from stdin).");
        var terminal = TerminalOption();
        var home = new Option<string>("--home") { Description = "the home server's HOST:PORT", Required = true };
        var code = new Option<string>("--code") { Description = "the one-time enrollment code", Required = true };
        var module = new Option<string?>("--pkcs11-module")
        {
            Description = "keep the device key on a PKCS#11 token (a smart card) instead of an encrypted file; the token must exist, its user PIN being the access-card PIN",
        };
        var label = new Option<string?>("--token-label") { Description = "the token's label (with --pkcs11-module)" };
        foreach (var o in new Option[] { terminal, home, code, module, label }) command.Options.Add(o);
        command.Validators.Add(result =>
        {
            if ((result.GetValue(module) is null) != (result.GetValue(label) is null)) result.AddError("--pkcs11-module and --token-label go together");
        });
        command.SetAction(async (parse, ct) =>
        {
            var pin = CliConsole.ReadSecret(parse.GetValue(module) is null ? "new access-card PIN" : "access-card PIN (the token's user PIN)");
            var token = parse.GetValue(module) is { } so ? new AccessCardToken(so, parse.GetValue(label)!) : null;
            try
            {
                var profile = await TerminalClient.EnrollAsync(parse.GetValue(terminal)!, parse.GetValue(home)!, parse.GetValue(code)!, pin, cancellationToken: ct, token: token);
                Console.WriteLine($"enrolled as '{profile.Name}' ({profile.DeviceId}) with the home server at {profile.Home}" +
                    (token is null ? "" : $"; the device key was generated on the token '{token.TokenLabel}' and cannot leave it"));
                return 0;
            }
            catch (Exception e) when (e is ControlErrorException or FormatException or IOException or InvalidOperationException or ArgumentException
                or System.Security.Authentication.AuthenticationException or System.Net.Sockets.SocketException or Net.Pkcs11Interop.Common.Pkcs11Exception)
            {
                return CliConsole.Fail(e.Message);
            }
        });
        return command;
    }

    private static Command Unlock()
    {
        var command = new Command("unlock", "Unlock the access card and the home card: access-card PIN, PIN1 and PIN2 from stdin, one a line. Starts the terminal agent.");
        var terminal = TerminalOption();
        command.Options.Add(terminal);
        command.SetAction(async (parse, ct) =>
        {
            var dir = parse.GetValue(terminal)!;
            var accessPin = CliConsole.ReadSecret("access-card PIN");
            var pin1 = CliConsole.ReadSecret("PIN1");
            var pin2 = CliConsole.ReadSecret("PIN2");
            try
            {
                if (!AgentClient.IsRunning(dir))
                {
                    var started = await StartAgentAsync(dir, accessPin, ct);
                    if (started is not null) return CliConsole.Fail(started);
                }
                await using var control = await AgentClient.ConnectAsync(dir, ct);
                var reply = await control.RequestAsync(new ControlMessage("unlock").Set("pin1", pin1).Set("pin2", pin2), ct);
                Console.WriteLine($"home card {reply.GetString("state")}; the access card stays unlocked for 10 idle minutes");
                return 0;
            }
            catch (ControlErrorException e)
            {
                return CliConsole.Fail(e.Message);
            }
        });
        return command;
    }

    /// <summary>Starts 'daiko terminal agent' in the background, handing it the access-card PIN on stdin.</summary>
    private static async Task<string?> StartAgentAsync(string dir, string accessPin, CancellationToken ct)
    {
        var self = Environment.ProcessPath!;
        var info = new ProcessStartInfo(self) { RedirectStandardInput = true, RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") info.ArgumentList.Add(typeof(Program).Assembly.Location);
        foreach (var a in new[] { "terminal", "agent", "--terminal", dir }) info.ArgumentList.Add(a);
        var process = Process.Start(info)!;
        await process.StandardInput.WriteLineAsync(accessPin);
        process.StandardInput.Close();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!AgentClient.IsRunning(dir))
        {
            if (process.HasExited)
            {
                var error = (await process.StandardError.ReadToEndAsync(ct)).Trim();
                return error.StartsWith("daiko: ", StringComparison.Ordinal) ? error[7..] : $"the terminal agent did not start: {error}";
            }
            if (DateTime.UtcNow > deadline) return "the terminal agent did not start within 30 s";
            await Task.Delay(50, ct);
        }
        return null;
    }

    private static Command AgentCommand()
    {
        var command = new Command("agent", "Run the terminal agent in the foreground (started by 'terminal unlock'; access-card PIN from stdin).") { Hidden = true };
        var terminal = TerminalOption();
        command.Options.Add(terminal);
        command.SetAction(async (parse, ct) =>
        {
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
        var command = new Command("lock", "\"Done\": the home card goes back to remote-access-wait and the access card is locked.");
        var terminal = TerminalOption();
        command.Options.Add(terminal);
        command.SetAction(async (parse, ct) =>
        {
            var dir = parse.GetValue(terminal)!;
            if (!AgentClient.IsRunning(dir))
            {
                Console.WriteLine("the access card is already locked");
                return 0;
            }
            try
            {
                await using (var control = await AgentClient.ConnectAsync(dir, ct))
                {
                    var reply = await control.RequestAsync(new ControlMessage("lock"), ct);
                    Console.WriteLine($"home card {reply.GetString("state")}; access card locked");
                }
            }
            catch (ControlErrorException e)
            {
                Console.Error.WriteLine($"daiko: {e.Message}; locking the access card anyway");
            }
            StopAgent(dir);
            return 0;
        });
        return command;
    }

    internal static void StopAgent(string dir)
    {
        var pidFile = TerminalAgent.PidPath(dir);
        if (File.Exists(pidFile) && int.TryParse(File.ReadAllText(pidFile), out var pid))
        {
            try
            {
                using var agent = Process.GetProcessById(pid);
                agent.Kill();
                agent.WaitForExit(5000);
            }
            catch (ArgumentException) { }
        }
        foreach (var f in new[] { pidFile, TerminalAgent.SocketPath(dir) })
        {
            try { File.Delete(f); } catch (IOException) { }
        }
    }

    private static Command Get()
    {
        var command = new Command("get", "Fetch an https URL through a delegated session; the body goes to stdout.");
        var terminal = TerminalOption();
        var url = new Argument<string>("URL") { Description = "the https URL" };
        var mode = ModeOption();
        var kex = new Option<string>("--kex") { Description = "psk_ke or psk_dhe_ke (resume mode)", DefaultValueFactory = _ => "psk_dhe_ke" };
        kex.AcceptOnlyFromAmong("psk_ke", "psk_dhe_ke");
        var earlyData = new Option<bool>("--early-data") { Description = "send the request as 0-RTT data when the ticket allows it (resume mode)" };
        var stats = new Option<bool>("--stats") { Description = "print one JSON line of the terminal's own costs to stderr" };
        var timeout = new Option<int>("--timeout") { Description = "seconds the session's handshake, and then each read or write, may wait on the market", DefaultValueFactory = _ => 30 };
        command.Arguments.Add(url);
        foreach (var o in new Option[] { terminal, mode, kex, earlyData, stats, timeout }) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            if (!Uri.TryCreate(parse.GetValue(url), UriKind.Absolute, out var target) || target.Scheme != Uri.UriSchemeHttps) return CliConsole.Fail("only https URLs are supported");
            if (parse.GetValue(timeout) is < 1 or > 3600) return CliConsole.Fail("--timeout must be 1 to 3600 seconds");
            var seconds = TimeSpan.FromSeconds(parse.GetValue(timeout));
            var clock = Stopwatch.StartNew();
            var sessionMode = Enum.Parse<SessionMode>(parse.GetValue(mode)!, ignoreCase: true);
            var request = System.Text.Encoding.ASCII.GetBytes($"GET {target.PathAndQuery} HTTP/1.1\r\nHost: {target.Authority}\r\nConnection: close\r\nUser-Agent: daiko\r\n\r\n");
            try
            {
                await using var control = await AgentClient.ConnectAsync(parse.GetValue(terminal)!, ct);
                var session = await new DelegatedConnector(control) { Timeout = seconds }.ConnectAsync(target.Host, target.Port, sessionMode,
                    parse.GetValue(kex) == "psk_ke" ? PskKeyExchangeMode.PskKe : PskKeyExchangeMode.PskDheKe,
                    parse.GetValue(earlyData) ? request : default, cancellationToken: ct);
                await using var stream = session.Stream;
                if (session.Tls is not { EarlyDataAccepted: true }) await stream.WriteAsync(request, ct);
                var response = await HttpResponseReader.ReadBodyAsync(stream, ct);
                await using (var stdout = Console.OpenStandardOutput()) await stdout.WriteAsync(response.Body, ct);
                if (parse.GetValue(stats))
                {
                    var extra = new Dictionary<string, object?> { ["mode"] = session.Mode.ToString().ToLowerInvariant(), ["control_bytes"] = control.BytesSent + control.BytesReceived };
                    Console.Error.WriteLine(session.Tls is { } tls
                        ? TlsCommands.StatsLine(tls, session.Counters, clock.Elapsed, extra)
                        : System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object?>
                        {
                            ["resumed"] = false, ["kex"] = "none", ["suite"] = "none", ["group"] = "none",
                            ["bytes_sent"] = session.Counters.BytesSent, ["bytes_received"] = session.Counters.BytesReceived,
                            ["round_trips"] = session.Counters.RoundTrips, ["public_key_ops"] = session.Counters.PublicKeyOperations,
                            ["early_data_accepted"] = false, ["elapsed_ms"] = Math.Round(clock.Elapsed.TotalMilliseconds, 1),
                            ["mode"] = "relay", ["control_bytes"] = control.BytesSent + control.BytesReceived,
                        }));
                }
                return response.StatusCode is >= 200 and < 400 ? 0 : CliConsole.Fail($"the market answered HTTP {response.StatusCode}");
            }
            catch (ControlErrorException e)
            {
                return CliConsole.Fail(e.Message);
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
        var command = new Command("prefetch", "Have the home server fetch session tickets for a market ahead of need, so that later 'get --mode resume' starts at once.");
        var terminal = TerminalOption();
        var url = new Argument<string>("URL") { Description = "an https URL of the market" };
        var count = new Option<int>("--count") { Description = "how many tickets to have ready (0 only reports)", DefaultValueFactory = _ => 1 };
        command.Arguments.Add(url);
        foreach (var o in new Option[] { terminal, count }) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            if (!Uri.TryCreate(parse.GetValue(url), UriKind.Absolute, out var target) || target.Scheme != Uri.UriSchemeHttps) return CliConsole.Fail("only https URLs are supported");
            if (parse.GetValue(count) is < 0 or > 8) return CliConsole.Fail("--count must be 0 to 8");
            try
            {
                await using var control = await AgentClient.ConnectAsync(parse.GetValue(terminal)!, ct);
                var (ready, handshakes) = await new DelegatedConnector(control).PrefetchAsync(target.Host, target.Port, parse.GetValue(count), cancellationToken: ct);
                Console.WriteLine($"{ready} session ticket(s) ready for {target.Authority} ({handshakes} handshake(s) by the home server now)");
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
        var command = new Command("forward", "Serve a local plaintext port; each connection becomes a delegated session to the target (like ghostunnel's client mode).");
        var terminal = TerminalOption();
        var listen = new Option<string>("--listen") { Description = "local HOST:PORT", Required = true };
        var target = new Option<string>("--target") { Description = "the market's HOST:PORT", Required = true };
        var mode = ModeOption();
        foreach (var o in new Option[] { terminal, listen, target, mode }) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            var dir = parse.GetValue(terminal)!;
            var targetText = parse.GetValue(target)!;
            var colon = targetText.LastIndexOf(':');
            var host = targetText[..colon];
            var port = int.Parse(targetText[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            var sessionMode = Enum.Parse<SessionMode>(parse.GetValue(mode)!, ignoreCase: true);
            await using var forwarder = LocalForwarder.Start(HomeServerCommands.ParseEndpoint(parse.GetValue(listen)!), async c =>
            {
                var control = await AgentClient.ConnectAsync(dir, c);
                var session = await new DelegatedConnector(control).ConnectAsync(host, port, sessionMode, cancellationToken: c);
                return new OwningStream(session.Stream, control);
            }, line => Console.Error.WriteLine($"daiko: {line}"));
            Console.WriteLine($"forwarding {forwarder.LocalEndPoint} → {targetText} ({sessionMode.ToString().ToLowerInvariant()})");
            var stop = new TaskCompletionSource();
            using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
            using var sigint = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
            await Task.WhenAny(stop.Task, Task.Delay(Timeout.Infinite, ct));
            return 0;
        });
        return command;
    }

    /// <summary>A session stream that also closes the control connection it came from.</summary>
    private sealed class OwningStream(Stream inner, IAsyncDisposable owner) : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);
        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        public override async ValueTask DisposeAsync()
        {
            await inner.DisposeAsync();
            await owner.DisposeAsync();
            await base.DisposeAsync();
        }
    }
}
