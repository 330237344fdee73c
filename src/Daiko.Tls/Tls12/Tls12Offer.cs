using Daiko.Tls.Messages;

namespace Daiko.Tls.Tls12;

/// <summary>
/// What a ClientHello adds to offer TLS 1.2: the ECDHE AEAD suites, extended_master_secret,
/// session_ticket (empty, or a ticket to resume with) and an empty renegotiation_info (RFC 5746).
/// Nothing else: no compression, no CBC, no RSA key transport, no point formats but uncompressed.
/// </summary>
internal sealed record Tls12Offer(IReadOnlyList<CipherSuite> Suites, byte[] Ticket)
{
    public void WriteExtensions(TlsWriter w)
    {
        w.WriteUInt16((ushort)ExtensionType.ExtendedMasterSecret);
        w.WriteVector16([]);
        w.WriteUInt16((ushort)ExtensionType.SessionTicket);
        w.WriteVector16(Ticket);
        w.WriteUInt16((ushort)ExtensionType.RenegotiationInfo);
        w.WriteVector16([0]);
    }
}
