using System.Security.Cryptography;

namespace Daiko.Tls;

/// <summary>
/// The state needed to continue a live connection's record layer elsewhere: the suite, both
/// application traffic secrets with their sequence numbers, the resumption master secret (so later
/// NewSessionTickets still yield PSKs), plaintext already decrypted but not yet delivered, and raw
/// transport bytes read past the last processed record. ToString never prints secrets.
/// </summary>
public sealed class ExportedSession
{
    public ExportedSession(CipherSuite suite, byte[] clientSecret, byte[] serverSecret, ulong clientSequence, ulong serverSequence,
        byte[] resumptionMasterSecret, string? serverName, string? alpn, byte[] pendingPlaintext, byte[] pendingTransportBytes)
    {
        Suite = suite;
        ClientSecret = clientSecret;
        ServerSecret = serverSecret;
        ClientSequence = clientSequence;
        ServerSequence = serverSequence;
        ResumptionMasterSecret = resumptionMasterSecret;
        ServerName = serverName;
        Alpn = alpn;
        PendingPlaintext = pendingPlaintext;
        PendingTransportBytes = pendingTransportBytes;
    }

    public CipherSuite Suite { get; }

    public byte[] ClientSecret { get; }

    public byte[] ServerSecret { get; }

    public ulong ClientSequence { get; }

    public ulong ServerSequence { get; }

    public byte[] ResumptionMasterSecret { get; }

    public string? ServerName { get; }

    public string? Alpn { get; }

    public byte[] PendingPlaintext { get; }

    public byte[] PendingTransportBytes { get; }

    /// <summary>
    /// The version of the exported connection. For TLS 1.2 each "secret" is that direction's key-block
    /// write key followed by its fixed IV, and the resumption master secret is the session's master secret.
    /// </summary>
    public TlsVersions Version => KeySchedule.CipherSuiteInfo.FindTls12(Suite) is null ? TlsVersions.Tls13 : TlsVersions.Tls12;

    /// <summary>
    /// The same session without its resumption secret (wiped here): the importer can carry on the
    /// connection, but no ticket the server sends on it yields a PSK, so the session cannot outlive it.
    /// </summary>
    public ExportedSession WithoutResumption()
    {
        CryptographicOperations.ZeroMemory(ResumptionMasterSecret);
        return new ExportedSession(Suite, ClientSecret, ServerSecret, ClientSequence, ServerSequence, [], ServerName, Alpn, PendingPlaintext, PendingTransportBytes);
    }

    /// <summary>True when the exporter kept the resumption secret back (<see cref="WithoutResumption"/>).</summary>
    public bool CanResume => ResumptionMasterSecret.Length > 0;

    public void Wipe()
    {
        CryptographicOperations.ZeroMemory(ClientSecret);
        CryptographicOperations.ZeroMemory(ServerSecret);
        CryptographicOperations.ZeroMemory(ResumptionMasterSecret);
        CryptographicOperations.ZeroMemory(PendingPlaintext);
    }

    public override string ToString() => $"ExportedSession({Suite}, sni={ServerName}, alpn={Alpn}, client_seq={ClientSequence}, server_seq={ServerSequence})";
}
