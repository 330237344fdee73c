using System.CommandLine;
using System.Diagnostics;
using System.Net.Sockets;
using System.Text.Json;
using Daiko.Tls;
using Daiko.Terminal.Http;

namespace Daiko.Cli.Commands;

/// <summary><c>daiko tls …</c>: direct TLS (1.3, or the TLS 1.2 profile) without delegation (the baseline).</summary>
internal static class TlsCommands
{
    public static Command Build()
    {
        var tls = new Command("tls", "Direct TLS (1.3, or 1.2 where a server speaks only that) through Daiko's own engine, without delegation (the baseline, and a curl-like tool).");
        var get = new Command("get", "Fetch an https URL and print the response body to stdout.");
        var url = new Argument<string>("URL") { Description = "the https URL to fetch" };
        var ca = new Option<FileInfo?>("--ca") { Description = "PEM file of trusted roots (default: the system roots)" }.ExistingFile();
        var cert = new Option<FileInfo?>("--cert") { Description = "PEM client certificate chain, sent when the server asks" }.ExistingFile();
        var key = new Option<FileInfo?>("--key") { Description = "PEM private key of --cert" }.ExistingFile();
        var saveTicket = new Option<FileInfo?>("--save-ticket") { Description = "write the session ticket the server issues to FILE (CBOR; contains the PSK: keep it private)" };
        var resumeFrom = new Option<FileInfo?>("--resume-from") { Description = "resume with the ticket saved in FILE" };
        var kex = new Option<string>("--kex") { Description = "PSK key exchange when resuming: psk_ke (no public-key operation) or psk_dhe_ke", DefaultValueFactory = _ => "psk_dhe_ke" };
        kex.AcceptOnlyFromAmong("psk_ke", "psk_dhe_ke");
        var earlyData = new Option<bool>("--early-data") { Description = "send the request as 0-RTT early data when the ticket allows it" };
        var stats = new Option<bool>("--stats") { Description = "print one JSON line of cost counters to stderr" };
        var version = new Option<string>("--tls-version") { Description = "protocol versions to offer: 1.2, 1.3 or auto (both; TLS 1.3 whenever the server speaks it)", DefaultValueFactory = _ => "auto" };
        version.AcceptOnlyFromAmong("1.2", "1.3", "auto");
        var timeout = new Option<int>("--timeout") { Description = "seconds the handshake, and then each read or write, may wait on the server", DefaultValueFactory = _ => 30 }.Seconds(1, 3600);
        foreach (var o in new Option[] { ca, cert, key, saveTicket, resumeFrom, kex, earlyData, version, stats, timeout }) get.Options.Add(o);
        get.Arguments.Add(url);
        get.Validators.Add(r =>
        {
            if ((r.GetResult(cert) is null) != (r.GetResult(key) is null)) r.AddError("--cert and --key go together");
        });
        get.SetAction(async (parse, ct) =>
        {
            if (!Uri.TryCreate(parse.GetValue(url), UriKind.Absolute, out var target) || target.Scheme != Uri.UriSchemeHttps) return CliConsole.Fail("only https URLs are supported");
            if ((parse.GetValue(cert) is null) != (parse.GetValue(key) is null)) return CliConsole.Fail("--cert and --key go together");
            if (parse.GetValue(timeout) is < 1 or > 3600) return CliConsole.Fail("--timeout must be 1 to 3600 seconds");
            var counters = new TlsCounters();
            var clock = Stopwatch.StartNew();
            SessionTicket? ticket = null;
            if (parse.GetValue(resumeFrom) is { } ticketFile)
            {
                if (!ticketFile.Exists) return CliConsole.Fail($"there is no ticket file {ticketFile.FullName}; save one first with --save-ticket FILE");
                try { ticket = Daiko.Protocol.Codecs.SessionTicketCodec.Decode(await File.ReadAllBytesAsync(ticketFile.FullName, ct)); }
                catch (Exception e) when (e is IOException or FormatException) { return CliConsole.Fail($"cannot use the ticket in {ticketFile.Name}: {e.Message}"); }
                if (ticket.IsExpired(DateTimeOffset.UtcNow)) return CliConsole.Fail($"the ticket in {ticketFile.Name} has expired; run once without --resume-from");
            }
            ClientCredential? credential = null;
            try
            {
                if (parse.GetValue(cert) is { } certFile) credential = SoftwareSigner.LoadCredential(certFile.FullName, parse.GetValue(key)!.FullName, counters);
            }
            catch (Exception e) when (e is IOException or System.Security.Cryptography.CryptographicException or InvalidOperationException)
            {
                return CliConsole.Fail($"cannot load the client certificate or key: {e.Message}");
            }
            var request = System.Text.Encoding.ASCII.GetBytes($"GET {target.PathAndQuery} HTTP/1.1\r\nHost: {target.Authority}\r\nConnection: close\r\nUser-Agent: daiko\r\n\r\n");
            var options = new TlsClientOptions
            {
                // An IP literal is checked against the certificate's IP addresses, but not sent as server_name (RFC 6066 §3).
                ServerName = target.HostNameType == UriHostNameType.Dns ? target.IdnHost : target.DnsSafeHost,
                SendServerName = target.HostNameType == UriHostNameType.Dns,
                ApplicationProtocols = ["http/1.1"],
                ClientCredential = credential,
                CertificateValidator = parse.GetValue(ca) is { } caFile ? X509ChainValidator.FromPemFiles([caFile.FullName], counters) : new X509ChainValidator(counters: counters),
                ResumptionTicket = ticket,
                Versions = ParseVersions(parse.GetValue(version)),
                PskModes = parse.GetValue(kex) == "psk_ke" ? [PskKeyExchangeMode.PskKe] : [PskKeyExchangeMode.PskDheKe],
                EarlyData = parse.GetValue(earlyData) ? request : ReadOnlyMemory<byte>.Empty,
                Counters = counters,
                // The engine owns the time bound (one per operation) and reports it as a TlsError.
                HandshakeTimeout = TimeSpan.FromSeconds(parse.GetValue(timeout)),
                OperationTimeout = TimeSpan.FromSeconds(parse.GetValue(timeout)),
            };
            TlsConnection connection;
            try
            {
                connection = await TlsClient.ConnectAsync(target.Host, target.Port, options, ct);
            }
            catch (SocketException e)
            {
                return CliConsole.Fail($"cannot connect to {target.Authority}: {e.SocketErrorCode}");
            }
            catch (TlsException e)
            {
                var hint = e.Alert is AlertDescription.UnknownCa && parse.GetValue(ca) is null ? "; if you trust its CA, name it with --ca PEM" : "";
                return CliConsole.Fail($"TLS handshake with {target.Authority} failed: {e.Message} ({e.Alert}){hint}");
            }
            await using (connection)
            {
                try
                {
                    if (!connection.EarlyDataAccepted) await connection.WriteAsync(request, ct);
                    var body = await HttpResponseReader.ReadBodyAsync(connection, ct);
                    await using (var stdout = Console.OpenStandardOutput()) await stdout.WriteAsync(body.Body, ct);
                    if (parse.GetValue(saveTicket) is { } saveFile)
                    {
                        var issued = connection.Tickets.FirstOrDefault() ?? await connection.WaitForTicketAsync(TimeSpan.FromSeconds(1), ct);
                        if (issued is null) Console.Error.WriteLine("daiko: the server issued no session ticket; nothing saved");
                        else
                        {
                            Daiko.Cards.Pins.CardFiles.WritePrivate(saveFile.FullName, Daiko.Protocol.Codecs.SessionTicketCodec.Encode(issued));
                        }
                    }
                    if (ticket is not null && !connection.Resumed)
                    {
                        Console.Error.WriteLine($"daiko: {target.Authority} did not resume the saved session ({parse.GetValue(kex) ?? "psk_dhe_ke"}); this was a full handshake");
                    }
                    if (parse.GetValue(stats))
                    {
                        Console.Error.WriteLine(StatsLine(connection, counters, clock.Elapsed));
                    }
                    return body.StatusCode is >= 200 and < 400 ? 0 : CliConsole.Fail($"the server answered HTTP {body.StatusCode}");
                }
                catch (Exception e) when (CliConsole.IsSessionFailure(e))
                {
                    return CliConsole.FailSession(target.Authority, e);
                }
            }
        });
        tls.Subcommands.Add(get);
        return tls;
    }

    /// <summary>The value of <c>--tls-version</c>: 1.2, 1.3 or auto (both).</summary>
    internal static TlsVersions ParseVersions(string? value) => value switch
    {
        "1.2" => TlsVersions.Tls12,
        "1.3" => TlsVersions.Tls13,
        _ => TlsVersions.Both,
    };

    /// <summary>The JSON line of docs/cli.md for <c>--stats</c>.</summary>
    internal static string StatsLine(TlsConnection connection, TlsCounters counters, TimeSpan elapsed, IDictionary<string, object?>? extra = null)
    {
        var stats = new Dictionary<string, object?>
        {
            ["resumed"] = connection.Resumed,
            ["kex"] = connection.KeyExchange switch { PskKeyExchangeMode.PskKe => "psk_ke", PskKeyExchangeMode.PskDheKe => "psk_dhe_ke", _ => "full" },
            ["version"] = connection.Version == TlsVersions.Tls12 ? "1.2" : "1.3",
            ["suite"] = connection.CipherSuite switch
            {
                CipherSuite.Aes128GcmSha256 => "TLS_AES_128_GCM_SHA256",
                CipherSuite.Aes256GcmSha384 => "TLS_AES_256_GCM_SHA384",
                CipherSuite.ChaCha20Poly1305Sha256 => "TLS_CHACHA20_POLY1305_SHA256",
                CipherSuite.EcdheEcdsaAes128GcmSha256 => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                CipherSuite.EcdheEcdsaAes256GcmSha384 => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                CipherSuite.EcdheRsaAes128GcmSha256 => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                CipherSuite.EcdheRsaAes256GcmSha384 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                CipherSuite.EcdheEcdsaChaCha20Poly1305Sha256 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                _ => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            },
            ["group"] = connection.Group switch { NamedGroup.X25519 => "x25519", NamedGroup.Secp256r1 => "secp256r1", NamedGroup.Secp384r1 => "secp384r1", _ => "none" },
            ["bytes_sent"] = counters.BytesSent,
            ["bytes_received"] = counters.BytesReceived,
            ["round_trips"] = counters.RoundTrips,
            ["public_key_ops"] = counters.PublicKeyOperations,
            ["early_data_accepted"] = connection.EarlyDataAccepted,
            ["elapsed_ms"] = Math.Round(elapsed.TotalMilliseconds, 1),
        };
        if (extra is not null) foreach (var (k, v) in extra) stats[k] = v;
        return JsonSerializer.Serialize(stats);
    }
}
