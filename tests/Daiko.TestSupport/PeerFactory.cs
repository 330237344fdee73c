namespace Daiko.TestSupport;

/// <summary>Starts a real TLS peer by name: openssl, gnutls, nginx or kestrel.</summary>
public static class PeerFactory
{
    public static async Task<ITlsPeer> StartAsync(string name, TestPki pki, string workDirectory, TlsPeerOptions? options = null) => name switch
    {
        "openssl" => await OpenSslServer.StartAsync(pki, options),
        "gnutls" => await GnuTlsServer.StartAsync(pki, workDirectory, options),
        "nginx" => await NginxServer.StartAsync(pki, workDirectory, options),
        "kestrel" => await KestrelServer.StartAsync(pki, options),
        _ => throw new ArgumentException($"unknown peer '{name}'", nameof(name)),
    };
}
