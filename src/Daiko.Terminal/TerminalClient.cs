using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Cards;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.Tls;

namespace Daiko.Terminal;

/// <summary>Enrollment and the control channel, from the terminal's side (F1, F2).</summary>
public static class TerminalClient
{
    /// <summary>
    /// Enrolls this terminal: checks that the home server's key matches the code's pin part before
    /// revealing the code's secret, creates the device key in a new access card, and stores the device
    /// certificate and the home server's pin. <paramref name="createAccessCard"/> is for tests only (an
    /// access card with explicit, cheap KDF parameters); without it the card calibrates Argon2id here.
    /// <paramref name="counters"/> is charged the control channel's bytes on the wire, its round trips and
    /// every public-key operation: the device key's generation, the handshake's key agreement and the
    /// check of the home server's CertificateVerify.
    /// </summary>
    public static async Task<TerminalProfile> EnrollAsync(string directory, string home, string code, string accessPin,
        CancellationToken cancellationToken = default, AccessCardToken? token = null, Func<string, string, AccessCard>? createAccessCard = null, TlsCounters? counters = null)
    {
        var (secret, pin) = EnrollmentCode.Split(code);
        if (AccessCard.Exists(directory)) throw new InvalidOperationException($"{directory} already holds an access card; use a new directory to enroll again");
        var (host, port) = new TerminalProfile { Home = home, HomeSpkiSha256 = "", DeviceId = "", Name = "" }.Endpoint;
        var pinCheck = new EnrollmentPinValidator(secret, pin);
        // The access card (and its KDF calibration, which takes seconds) is made before connecting: the
        // home server gives a peer without a device certificate only a few idle seconds.
        using var access = token is not null ? AccessCard.CreateOnToken(directory, accessPin, token)
            : createAccessCard is not null ? createAccessCard(directory, accessPin) : AccessCard.Create(directory, accessPin);
        counters?.AddPublicKeyOperations(1); // the device key pair's generation
        try
        {
            var ssl = await OpenControlTlsAsync(home, host, port, new TlsClientOptions
            {
                ServerName = "daiko-home",
                ApplicationProtocols = ControlProtocol.Versions,
                CertificateValidator = pinCheck,
                HandshakeTimeout = TimeSpan.FromSeconds(15),
                Counters = counters,
            }, "the code does not match the home server at " + home + ": a mistyped code, a code made by a home server of a version before 2026-12-06, "
                + "or a server that is not the one that issued it (possible interception); nothing was sent", cancellationToken);
            var presentedSpkiHash = pinCheck.PresentedSpkiHash!;
            await using var connection = new ControlConnection(ssl) { Version = VersionOf(ssl) };
            connection.Start();
            var reply = await connection.RequestAsync<EnrolledReply>(new EnrollRequest(secret, access.PublicKeyInfo), cancellationToken);
            using var homeCertificate = X509CertificateLoader.LoadCertificate(reply.HomeCertificate);
            var homeHash = SHA256.HashData(homeCertificate.PublicKey.ExportSubjectPublicKeyInfo());
            if (!CryptographicOperations.FixedTimeEquals(homeHash, presentedSpkiHash))
            {
                throw new ControlErrorException(ErrorCode.HomeMismatch, "the home server's certificate changed during enrollment");
            }
            File.WriteAllText(Path.Combine(directory, "device.pem"), PemEncoding.WriteString("CERTIFICATE", reply.Certificate));
            var profile = new TerminalProfile { Home = home, HomeSpkiSha256 = Convert.ToHexString(homeHash).ToLowerInvariant(), DeviceId = reply.DeviceId, Name = reply.Name };
            profile.Save(directory);
            return profile;
        }
        catch
        {
            foreach (var f in new[] { "device-key.enc", "device-key.p8", "device-key.token.json", "device-key.pub", "access-card.json" }) File.Delete(Path.Combine(directory, f));
            throw;
        }
    }

    /// <summary>Opens the mutually authenticated control channel with the unlocked device key.</summary>
    /// <param name="versions">The control protocol versions offered, the preferred first (fewer only to stand in for an older terminal).</param>
    public static async Task<ControlConnection> ConnectAsync(string directory, ECDsa deviceKey, CancellationToken cancellationToken, IReadOnlyList<string>? versions = null)
    {
        var stream = await ConnectStreamAsync(directory, deviceKey, cancellationToken, versions: versions);
        var connection = new ControlConnection(stream) { Version = VersionOf(stream) };
        connection.Start();
        return connection;
    }

    /// <summary>The control protocol version the channel's handshake agreed on (daiko/1 for a stream that negotiated none).</summary>
    public static string VersionOf(TlsConnection channel) =>
        channel.ApplicationProtocol is { } agreed && ControlProtocol.Versions.Contains(agreed) ? agreed : ControlProtocol.Alpn1;

    /// <summary>
    /// The control channel's TLS stream itself (the agent pipes it to local clients). It runs on
    /// Daiko.Tls, so the device key signs CertificateVerify wherever it lives (a file-backed access
    /// card, or a PKCS#11 token whose key cannot leave it), and the home server's key is pinned.
    /// </summary>
    /// <param name="counters">Charged the handshake's bytes, round trips and public-key operations (the device signature included), then the channel's records.</param>
    /// <param name="resume">A ticket the home server issued on an earlier channel of this device: the channel resumes with it (no device signature, no certificate check).</param>
    /// <param name="versions">The control protocol versions offered, the preferred first; default <see cref="ControlProtocol.Versions"/>.</param>
    public static async Task<TlsConnection> ConnectStreamAsync(string directory, ECDsa deviceKey, CancellationToken cancellationToken, TlsCounters? counters = null, SessionTicket? resume = null,
        IReadOnlyList<string>? versions = null)
    {
        var profile = TerminalProfile.Load(directory);
        var (host, port) = profile.Endpoint;
        using var deviceCertificate = X509Certificate2.CreateFromPem(File.ReadAllText(Path.Combine(directory, "device.pem")));
        var certificateDer = deviceCertificate.RawData;
        return await OpenControlTlsAsync(profile.Home, host, port, new TlsClientOptions
        {
            ServerName = "daiko-home",
            ApplicationProtocols = versions ?? ControlProtocol.Versions,
            ClientCredential = new ClientCredential([certificateDer], new SoftwareSigner(deviceKey, counters)),
            CertificateValidator = new PinnedKeyValidator(Convert.FromHexString(profile.HomeSpkiSha256)),
            HandshakeTimeout = TimeSpan.FromSeconds(15),
            Counters = counters,
            ResumptionTicket = resume,
            // The channel lives as long as the agent and may sit idle between commands: no read deadline
            // (each request has its own, and the agent's idle period and the home server end the channel).
            OperationTimeout = Timeout.InfiniteTimeSpan,
        }, $"the server at {profile.Home} does not hold the pinned home server key", cancellationToken);
    }

    private static async Task<TlsConnection> OpenControlTlsAsync(string home, string host, int port, TlsClientOptions options, string mismatch, CancellationToken cancellationToken)
    {
        Stream transport;
        try
        {
            transport = await TlsClient.OpenTcpAsync(host, port, cancellationToken);
        }
        catch (System.Net.Sockets.SocketException e)
        {
            throw new ControlErrorException(ErrorCode.Unavailable, $"the home server at {home} is unreachable ({e.SocketErrorCode})");
        }
        TlsConnection connection;
        try
        {
            connection = await TlsClient.ConnectAsync(transport, options, cancellationToken);
        }
        catch (TlsException e) when (e.Error == TlsError.CertificateRejected)
        {
            throw new ControlErrorException(ErrorCode.HomeMismatch, mismatch);
        }
        catch (TlsException e) when (e.Alert == AlertDescription.NoApplicationProtocol)
        {
            throw new ControlErrorException(ErrorCode.ProtocolVersion, $"the home server at {home} speaks no control protocol this terminal does ({string.Join(", ", options.ApplicationProtocols)}): update the terminal or the home server");
        }
        catch (TlsException e)
        {
            throw new ControlErrorException(ErrorCode.Unavailable, $"the control channel to {home} failed: {e.Message}");
        }
        if (connection.ApplicationProtocol is not { } agreed || !options.ApplicationProtocols.Contains(agreed))
        {
            await connection.DisposeAsync();
            throw new ControlErrorException(ErrorCode.ProtocolVersion, $"the home server at {home} agreed on no control protocol this terminal speaks ({string.Join(", ", options.ApplicationProtocols)}; an older version?): update it");
        }
        return connection;
    }

    /// <summary>Accepts only the home server key the terminal pinned at enrollment.</summary>
    private sealed class PinnedKeyValidator(byte[] spkiSha256) : IServerCertificateValidator
    {
        public ValueTask<CertificateVerdict> ValidateAsync(string? serverName, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken) =>
            ValueTask.FromResult(chain.Count > 0 && CryptographicOperations.FixedTimeEquals(SpkiHash(chain[0]), spkiSha256)
                ? CertificateVerdict.Ok
                : CertificateVerdict.Fail(CertificateProblem.UntrustedRoot, "the home server's key is not the pinned one"));
    }

    /// <summary>At enrollment: the key must match the pin part of the one-time code before its secret is sent.</summary>
    private sealed class EnrollmentPinValidator(string secret, string pin) : IServerCertificateValidator
    {
        public byte[]? PresentedSpkiHash { get; private set; }

        public ValueTask<CertificateVerdict> ValidateAsync(string? serverName, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken)
        {
            if (chain.Count == 0) return ValueTask.FromResult(CertificateVerdict.Fail(CertificateProblem.Malformed, "no certificate"));
            var hash = SpkiHash(chain[0]);
            if (!CryptographicOperations.FixedTimeEquals(System.Text.Encoding.ASCII.GetBytes(EnrollmentCode.PinPart(secret, hash)), System.Text.Encoding.ASCII.GetBytes(pin)))
            {
                return ValueTask.FromResult(CertificateVerdict.Fail(CertificateProblem.UntrustedRoot, "the home server's key does not match the enrollment code"));
            }
            PresentedSpkiHash = hash;
            return ValueTask.FromResult(CertificateVerdict.Ok);
        }
    }

    private static byte[] SpkiHash(byte[] certificateDer)
    {
        try
        {
            using var certificate = X509CertificateLoader.LoadCertificate(certificateDer);
            return SHA256.HashData(certificate.PublicKey.ExportSubjectPublicKeyInfo());
        }
        catch (CryptographicException)
        {
            return [];
        }
    }
}
