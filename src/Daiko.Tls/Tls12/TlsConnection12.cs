using Daiko.Tls.Records;

namespace Daiko.Tls;

public sealed partial class TlsConnection
{
    /// <summary>The protocol version this connection runs: <see cref="TlsVersions.Tls12"/> or <see cref="TlsVersions.Tls13"/>.</summary>
    public TlsVersions Version { get; }

    /// <summary>A TLS 1.2 ticket arrives inside the handshake; it is handed out like a TLS 1.3 one.</summary>
    internal void AddTicket(SessionTicket ticket)
    {
        lock (_tickets) _tickets.Add(ticket);
        _newTickets.Writer.TryWrite(ticket);
    }

    /// <summary>
    /// After a TLS 1.2 handshake no handshake message is welcome: a HelloRequest (renegotiation) is
    /// refused with no_renegotiation and ends the connection; anything else is unexpected.
    /// </summary>
    private static TlsException RefusePostHandshake12(HandshakeMessage message) => message.Type == HandshakeType.HelloRequest
        ? new TlsException(TlsError.HandshakeFailure, AlertDescription.NoRenegotiation, "the server asked to renegotiate; this client refuses renegotiation")
        : TlsException.Unexpected($"{message.Type} after a TLS 1.2 handshake");
}
