using System.CommandLine;
using System.Net;
using System.Runtime.InteropServices;
using System.Security.Cryptography.X509Certificates;
using Daiko.Cards;
using Daiko.Home.Hosting;
using Daiko.Home.Trust;
using Daiko.Home.Web;

namespace Daiko.Cli.Commands;

/// <summary>
/// <c>daiko home serve</c> running: the home server, the console, and the process's signals. SIGHUP
/// re-reads DIR/home.json and the trust roots; SIGTERM (or Ctrl-C) stops accepting, closes the
/// terminals' channels, ends the devices' sessions, cuts whatever still runs after home.json's
/// shutdown_seconds, and exits 0 well within 5 s. The log is plain or JSON (<c>--log-format</c>).
/// </summary>
internal static class HomeServe
{
    public sealed record Arguments(string Home, string? Listen, string? Console, string? ConsoleCert, string? ConsoleKey, string? PurseConnection, bool AllowPrivateMarkets = false, bool ProxyProtocol = false, bool FetchMissingIntermediates = false, string? LogFormat = null)
    {
        /// <summary>The balancers whose PROXY headers are believed (--proxy-from).</summary>
        public Daiko.Home.Control.ProxySources ProxyFrom { get; init; } = Daiko.Home.Control.ProxySources.Loopback;

        /// <summary>How long the audit log keeps its lines (--audit-days, --audit-max-lines).</summary>
        public Daiko.Home.Storage.AuditRetention AuditRetention { get; init; } = Daiko.Home.Storage.AuditRetention.Default;
    }

    public static async Task<int> RunAsync(Arguments a, CancellationToken ct)
    {
        HomeConfig config;
        try { config = HomeConfig.Load(a.Home); }
        catch (InvalidDataException e) { return CliConsole.Fail(e.Message); }
        var listenText = a.Listen ?? config.Listen ?? "127.0.0.1:7443";
        var listen = HomeServerCommands.ParseEndpoint(listenText);
        var consoleText = a.Console ?? config.Console;
        var consoleEndpoint = consoleText is null ? null : HomeServerCommands.ParseEndpoint(consoleText, "--console");
        HomeCard card;
        try
        {
            card = HomeCard.Open(new HomeCardOptions(a.Home));
        }
        catch (Exception e) when (e is IOException or InvalidOperationException)
        {
            return CliConsole.Fail(e.Message);
        }
        using (card)
        {
            using var log = new StderrLog(json: (a.LogFormat ?? config.LogFormat) == "json");
            var serveLog = log.CreateLogger("Daiko.Serve");
            HomeServer server;
            try
            {
                server = await HomeServer.StartAsync(new HomeServerOptions(a.Home, listen)
                {
                    LoggerFactory = log,
                    Store = a.PurseConnection is { } cs ? Daiko.Home.Storage.HomeStore.Postgres(cs) : null,
                    AllowPrivateMarkets = a.AllowPrivateMarkets,
                    ProxyProtocol = a.ProxyProtocol,
                    ProxyFrom = a.ProxyFrom,
                    FetchMissingIntermediates = a.FetchMissingIntermediates,
                    AuditRetention = a.AuditRetention,
                }, card);
            }
            catch (System.Net.Sockets.SocketException e)
            {
                return CliConsole.Fail(HomeServerCommands.ListenProblem(listenText, e));
            }
            catch (HomeAlreadyServingException e)
            {
                return CliConsole.Fail(e.Message);
            }
            if (card.CertificateChain.Count == 0) serveLog.NoCertificateYet(a.Home);
            if (a.AllowPrivateMarkets) serveLog.PrivateMarketsAllowed();
            if (a.ProxyProtocol) serveLog.ProxyProtocolTrusted(a.ProxyFrom.ToString());
            if (a.FetchMissingIntermediates) serveLog.IntermediatesFetched();
            HomeWeb? web = null;
            try
            {
                if (consoleEndpoint is not null)
                {
                    web = await HomeWeb.StartAsync(new HomeWebOptions(a.Home, consoleEndpoint)
                    {
                        Certificate = ConsoleCertificate(a, server, consoleEndpoint),
                        Config = () => Volatile.Read(ref config),
                    }, server);
                }
            }
            catch (Exception e) when (e is ArgumentException or IOException or System.Security.Cryptography.CryptographicException)
            {
                await server.DisposeAsync();
                // Kestrel wraps the socket's refusal (an address in use) in exceptions of its own.
                var refusal = e;
                while (refusal is not null and not System.Net.Sockets.SocketException) refusal = refusal.InnerException;
                return CliConsole.Fail(refusal is System.Net.Sockets.SocketException se ? HomeServerCommands.ListenProblem(consoleText!, se)
                    : e.Message.Contains("address already in use", StringComparison.OrdinalIgnoreCase) ? $"cannot listen on {consoleText}: the address is already in use (another server is running there; pick another port)"
                    : e.Message);
            }
            Console.WriteLine($"home server listening on {server.LocalEndPoint} (card {card.CardId[..16]}, state {Daiko.Home.Handlers.CardGate.StateName(card.State)})");
            if (web is not null) Console.WriteLine($"console on {web.BaseUrl}/ (log in with 'daiko home console-link --home {a.Home}'; /healthz and /metrics there too)");
            if (ConsoleLinks.RunningFingerprint(a.Home) is { } consoleFingerprint) Console.WriteLine($"console certificate SHA-256 {consoleFingerprint}");
            var stop = new TaskCompletionSource();
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
            using var sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, c =>
            {
                c.Cancel = true;
                Reload(a.Home, ref config, listenText, consoleText, serveLog);
            });
            await Task.WhenAny(stop.Task, Task.Delay(Timeout.Infinite, ct));
            serveLog.Stopping();
            var clock = System.Diagnostics.Stopwatch.StartNew();
            await StopAsync(server, web, TimeSpan.FromSeconds(Volatile.Read(ref config).Limits.ShutdownSeconds), serveLog);
            serveLog.Stopped(clock.Elapsed.TotalSeconds);
        }
        return 0;
    }

    /// <summary>SIGHUP: the new home.json takes effect (a broken one is refused and the old one kept); the trust roots are re-read.</summary>
    private static void Reload(string home, ref HomeConfig config, string listenText, string? consoleText, Microsoft.Extensions.Logging.ILogger log)
    {
        MarketTrust.ReloadAll();
        var roots = MarketTrust.List(home).Count;
        try
        {
            Volatile.Write(ref config, HomeConfig.Load(home));
            var fresh = Volatile.Read(ref config);
            var restart = (fresh.Listen is { } l && l != listenText) || (fresh.Console is { } w && w != consoleText) ? "; new listen addresses take effect at the next start" : "";
            var defaults = fresh.DeviceDefaults.ToPolicy();
            log.Reloaded(fresh.Limits.ConsoleSessionMinutes, fresh.Limits.ConsoleLinkMinutes, fresh.Limits.ShutdownSeconds, defaults.MarketsText, defaults.ModesText, roots, restart);
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            log.NotReloaded(e.Message, roots);
        }
    }

    /// <summary>Stops accepting (console, then control listener), waits for work in flight up to <paramref name="grace"/>, then cuts it.</summary>
    private static async Task StopAsync(HomeServer server, HomeWeb? web, TimeSpan grace, Microsoft.Extensions.Logging.ILogger log)
    {
        var stopping = Task.Run(async () =>
        {
            if (web is not null) await web.DisposeAsync();
            await server.DisposeAsync();
        });
        if (await Task.WhenAny(stopping, Task.Delay(grace)) == stopping) return;
        server.Connections.CloseAll("the home server is stopping");
        if (await Task.WhenAny(stopping, Task.Delay(TimeSpan.FromSeconds(1))) != stopping)
            log.WorkCut();
    }

    /// <summary><c>daiko home console-link</c>: a one-time login URL for the running console.</summary>
    public static Command ConsoleLink()
    {
        var command = new Command("console-link", "Print a one-time URL that logs the owner into the running console (valid a few minutes, once; home.json limits.console_link_minutes).")
            .WithExamples("daiko home console-link --home ~/daiko-home", "daiko home console-link --home ~/daiko-home --json");
        var home = HomeCardCommands.HomeOption();
        var json = new Option<bool>("--json") { Description = "print {\"url\",\"expires\",\"fingerprint\"} (the fingerprint of the certificate the running console presents, or null)" };
        command.Options.Add(home);
        command.Options.Add(json);
        command.SetAction(parse =>
        {
            var dir = parse.GetValue(home)!;
            try
            {
                var config = HomeConfig.Load(dir);
                var (url, expires) = ConsoleLinks.Issue(dir, TimeSpan.FromMinutes(config.Limits.ConsoleLinkMinutes));
                var fingerprintNow = ConsoleLinks.RunningFingerprint(dir);
                CliOutput.Print(parse.GetValue(json), new { url, expires = expires.UtcDateTime, fingerprint = fingerprintNow }, url);
                Console.Error.WriteLine($"daiko: open it before {expires:HH:mm} UTC; it works once");
                if (fingerprintNow is { } fingerprint)
                {
                    // The home identity's certificate is self-signed: a browser warns about it, and about an impostor's alike.
                    Console.Error.WriteLine($"daiko: the console's certificate has SHA-256 fingerprint {fingerprint}; if the browser warns about the certificate, " +
                        "open its details and compare before you go on: another fingerprint means another server is answering, and the link must not be opened there");
                }
                return 0;
            }
            catch (Exception e) when (e is InvalidOperationException or InvalidDataException or IOException or UnauthorizedAccessException)
            {
                return CliConsole.Fail(e.Message);
            }
        });
        return command;
    }

    private static X509Certificate2? ConsoleCertificate(Arguments a, HomeServer server, IPEndPoint endpoint) =>
        ConsoleOptions.Load(a.ConsoleCert, a.ConsoleKey) ?? (IPAddress.IsLoopback(endpoint.Address) ? null : server.Identity.Certificate);
}
