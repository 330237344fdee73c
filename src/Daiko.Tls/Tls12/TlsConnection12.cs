using Daiko.Tls.Records;

namespace Daiko.Tls;

public sealed partial class TlsConnection
{
    /// <summary>The protocol version this connection runs: <see cref="TlsVersions.Tls12"/> or <see cref="TlsVersions.Tls13"/>.</summary>
    public TlsVersions Version { get; }

    /// <summary>A TLS 1.2 ticket arrives inside the handshake; it is handed out like a TLS 1.3 one.</summary>
    internal void AddTicket(SessionTicket ticket) => Receive(ticket);

    /// <summary>
    /// After a TLS 1.2 handshake no handshake message is welcome: a HelloRequest (renegotiation) is
    /// refused with no_renegotiation and ends the connection; anything else is unexpected.
    /// </summary>
    private static TlsException RefusePostHandshake12(HandshakeMessage message) => message.Type == HandshakeType.HelloRequest
        ? new TlsException(TlsError.HandshakeFailure, AlertDescription.NoRenegotiation, "the server asked to renegotiate; this client refuses renegotiation")
        : TlsException.Unexpected($"{message.Type} after a TLS 1.2 handshake");
}

public sealed partial class TlsConnection
{
    /// <summary>TLS 1.2 export: each direction's key-block key and fixed IV, and the master secret.</summary>
    private ExportedSession Export12(RecordProtection read, RecordProtection write)
    {
        var (clientKey, clientIv) = write.Tls12Keys;
        var (serverKey, serverIv) = read.Tls12Keys;
        return new ExportedSession(_suite.Suite, [.. clientKey, .. clientIv], [.. serverKey, .. serverIv], write.Sequence, read.Sequence,
            (byte[])_resumptionMasterSecret.Clone(), ServerName, ApplicationProtocol, UnreadPlaintext.ToArray(), _records.UnprocessedTransportBytes.ToArray());
    }

    /// <summary>Continues an exported TLS 1.2 connection's record layer over <paramref name="transport"/>.</summary>
    internal static TlsConnection Import12(Stream transport, ExportedSession session, TlsClientOptions options)
    {
        var suite = KeySchedule.CipherSuiteInfo.FindTls12(session.Suite)!;
        var records = new RecordLayer(transport, options.Counters) { Padding = options.RecordPadding, AllowChangeCipherSpec = false };
        records.SetReadProtection(Protection(suite, session.ServerSecret, session.ServerSequence));
        records.SetWriteProtection(Protection(suite, session.ClientSecret, session.ClientSequence));
        records.InjectTransportBytes(session.PendingTransportBytes);
        var connection = new TlsConnection(records, options, suite, null, null, session.Alpn, false, [], (byte[])session.ResumptionMasterSecret.Clone(),
            session.ServerName, TlsVersions.Tls12);
        connection.AddPendingPlaintext(session.PendingPlaintext);
        return connection;
    }

    private static RecordProtection Protection(KeySchedule.CipherSuiteInfo suite, byte[] keyAndIv, ulong sequence)
    {
        var key = keyAndIv[..suite.KeyLength];
        try
        {
            return new RecordProtection(suite, key, keyAndIv[suite.KeyLength..], sequence);
        }
        finally
        {
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(key);
        }
    }
}
