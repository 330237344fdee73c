using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Cards;
using Daiko.Home.Control;
using Daiko.Home.Server;
using Daiko.Tls;

namespace Daiko.Terminal;

/// <summary>Enrollment and the control channel, from the terminal's side (F1, F2).</summary>
public static class TerminalClient
{
    /// <summary>
    /// Enrolls this terminal: checks that the home server's key matches the code's pin part before
    /// revealing the code's secret, creates the device key in a new access card, and stores the device
    /// certificate and the home server's pin.
    /// </summary>
    public static async Task<TerminalProfile> EnrollAsync(string directory, string home, string code, string accessPin, int kdfIterations = AccessCard.DefaultIterations, CancellationToken cancellationToken = default)
    {
        var (secret, pin) = EnrollmentCode.Split(code);
        if (AccessCard.Exists(directory)) throw new InvalidOperationException($"{directory} already holds an access card; use a new directory to enroll again");
        var (host, port) = new TerminalProfile { Home = home, HomeSpkiSha256 = "", DeviceId = "", Name = "" }.Endpoint;
        byte[]? presentedSpkiHash = null;
        var transport = await TlsClient.OpenTcpAsync(host, port, cancellationToken);
        var ssl = new SslStream(transport, false, (_, certificate, _, _) =>
        {
            if (certificate is null) return false;
            using var c = new X509Certificate2(certificate);
            presentedSpkiHash = SHA256.HashData(c.PublicKey.ExportSubjectPublicKeyInfo());
            return true;
        });
        await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = "daiko-home", EnabledSslProtocols = SslProtocols.Tls13 }, cancellationToken);
        if (presentedSpkiHash is null || !CryptographicOperations.FixedTimeEquals(
                System.Text.Encoding.ASCII.GetBytes(EnrollmentCode.PinPart(presentedSpkiHash)), System.Text.Encoding.ASCII.GetBytes(pin)))
        {
            await ssl.DisposeAsync();
            throw new ControlErrorException("home-mismatch", "the server at " + home + " is not the home server that issued this code (possible interception); nothing was sent");
        }
        await using var connection = new ControlConnection(ssl);
        connection.Start();
        using var access = AccessCard.Create(directory, accessPin, kdfIterations);
        try
        {
            var reply = await connection.RequestAsync(new ControlMessage("enroll").Set("secret", secret).Set("device_spki", access.PublicKeyInfo), cancellationToken);
            using var homeCertificate = X509CertificateLoader.LoadCertificate(reply.GetBytes("home_certificate"));
            var homeHash = SHA256.HashData(homeCertificate.PublicKey.ExportSubjectPublicKeyInfo());
            if (!CryptographicOperations.FixedTimeEquals(homeHash, presentedSpkiHash))
            {
                throw new ControlErrorException("home-mismatch", "the home server's certificate changed during enrollment");
            }
            File.WriteAllText(Path.Combine(directory, "device.pem"), PemEncoding.WriteString("CERTIFICATE", reply.GetBytes("certificate")));
            var profile = new TerminalProfile { Home = home, HomeSpkiSha256 = Convert.ToHexString(homeHash).ToLowerInvariant(), DeviceId = reply.GetString("device_id"), Name = reply.GetString("name") };
            profile.Save(directory);
            return profile;
        }
        catch
        {
            foreach (var f in new[] { "device-key.p8", "device-key.pub", "access-card.json" }) File.Delete(Path.Combine(directory, f));
            throw;
        }
    }

    /// <summary>Opens the mutually authenticated control channel with the unlocked device key.</summary>
    public static async Task<ControlConnection> ConnectAsync(string directory, ECDsa deviceKey, CancellationToken cancellationToken)
    {
        var connection = new ControlConnection(await ConnectStreamAsync(directory, deviceKey, cancellationToken));
        connection.Start();
        return connection;
    }

    /// <summary>The control channel's TLS stream itself (the agent pipes it to local clients).</summary>
    public static async Task<Stream> ConnectStreamAsync(string directory, ECDsa deviceKey, CancellationToken cancellationToken)
    {
        var profile = TerminalProfile.Load(directory);
        var (host, port) = profile.Endpoint;
        using var deviceCertificate = X509Certificate2.CreateFromPem(File.ReadAllText(Path.Combine(directory, "device.pem")));
        var withKey = deviceCertificate.CopyWithPrivateKey(deviceKey);
        var clientCertificate = X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
        Stream transport;
        try
        {
            transport = await TlsClient.OpenTcpAsync(host, port, cancellationToken);
        }
        catch (System.Net.Sockets.SocketException e)
        {
            throw new ControlErrorException("unavailable", $"the home server at {profile.Home} is unreachable ({e.SocketErrorCode})");
        }
        var pinned = Convert.FromHexString(profile.HomeSpkiSha256);
        var ssl = new SslStream(transport, false, (_, certificate, _, _) =>
        {
            if (certificate is null) return false;
            using var c = new X509Certificate2(certificate);
            return CryptographicOperations.FixedTimeEquals(SHA256.HashData(c.PublicKey.ExportSubjectPublicKeyInfo()), pinned);
        });
        try
        {
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "daiko-home",
                EnabledSslProtocols = SslProtocols.Tls13,
                ClientCertificates = new X509CertificateCollection { clientCertificate },
            }, cancellationToken);
        }
        catch (AuthenticationException)
        {
            await ssl.DisposeAsync();
            throw new ControlErrorException("home-mismatch", $"the server at {profile.Home} does not hold the pinned home server key");
        }
        return ssl;
    }
}
