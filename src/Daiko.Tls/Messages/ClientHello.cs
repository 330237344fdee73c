using System.Text;

namespace Daiko.Tls.Messages;

/// <summary>One offered PSK: its identity and obfuscated ticket age (RFC 8446 §4.2.11).</summary>
internal readonly record struct PskIdentity(byte[] Identity, uint ObfuscatedAge);

/// <summary>
/// What the client offers (RFC 8446 §4.1.2). <see cref="Encode"/> places pre_shared_key last, as
/// required, and reports where the binders start so they can be computed over the truncated message.
/// </summary>
internal sealed class ClientHello
{
    /// <summary>The record_size_limit the client offers: a TLS 1.3 inner plaintext of 2^14 + 1 bytes (RFC 8449 §4).</summary>
    public const ushort RecordSizeLimitOffered = (1 << 14) + 1;

    public required byte[] Random { get; init; }

    public byte[] SessionId { get; init; } = [];

    public required IReadOnlyList<CipherSuite> CipherSuites { get; init; }

    public string? ServerName { get; init; }

    public required IReadOnlyList<NamedGroup> Groups { get; init; }

    public required IReadOnlyList<SignatureScheme> SignatureSchemes { get; init; }

    /// <summary>Key shares offered, in order.</summary>
    public IReadOnlyList<(NamedGroup Group, byte[] PublicKey)> KeyShares { get; init; } = [];

    public IReadOnlyList<string> Alpn { get; init; } = [];

    public IReadOnlyList<PskKeyExchangeMode> PskModes { get; init; } = [];

    public bool EarlyData { get; init; }

    public byte[]? Cookie { get; init; }

    public IReadOnlyList<PskIdentity> PskIdentities { get; init; } = [];

    public int BinderLength { get; init; }

    /// <summary>Whether TLS 1.3 is offered (supported_versions, key_share). False only in a TLS 1.2-only hello.</summary>
    public bool OfferTls13 { get; init; } = true;

    /// <summary>The TLS 1.2 offer (its suites and extensions), or null in a TLS 1.3-only hello.</summary>
    public Tls12.Tls12Offer? Tls12 { get; init; }

    /// <summary>Encodes the whole handshake message; <paramref name="bindersOffset"/> is the offset of the binders list (or -1).</summary>
    public byte[] Encode(out int bindersOffset)
    {
        var w = new TlsWriter(512);
        var msg = w.BeginHandshake(HandshakeType.ClientHello);
        w.WriteUInt16(0x0303);
        w.WriteBytes(Random);
        w.WriteVector8(SessionId);
        var suites = w.BeginVector(2);
        foreach (var s in CipherSuites) w.WriteUInt16((ushort)s);
        foreach (var s in Tls12?.Suites ?? []) w.WriteUInt16((ushort)s);
        w.EndVector(suites);
        w.WriteVector8([0]);
        var extensions = w.BeginVector(2);
        WriteExtensions(w, out bindersOffset);
        w.EndVector(extensions);
        w.EndVector(msg);
        return w.ToArray();
    }

    private void WriteExtensions(TlsWriter w, out int bindersOffset)
    {
        bindersOffset = -1;
        if (ServerName is not null)
        {
            var ext = Begin(w, ExtensionType.ServerName);
            var list = w.BeginVector(2);
            w.WriteUInt8(0);
            // RFC 6066 §3: "The hostname is represented ... without a trailing dot."
            w.WriteVector16(Encoding.ASCII.GetBytes(ServerName.TrimEnd('.')));
            w.EndVector(list);
            w.EndVector(ext);
        }
        if (Groups.Count > 0)
        {
            var ext = Begin(w, ExtensionType.SupportedGroups);
            var list = w.BeginVector(2);
            foreach (var g in Groups) w.WriteUInt16((ushort)g);
            w.EndVector(list);
            w.EndVector(ext);
        }
        if (SignatureSchemes.Count > 0)
        {
            var ext = Begin(w, ExtensionType.SignatureAlgorithms);
            var list = w.BeginVector(2);
            foreach (var s in SignatureSchemes) w.WriteUInt16((ushort)s);
            w.EndVector(list);
            w.EndVector(ext);
        }
        if (OfferTls13)
        {
            var ext = Begin(w, ExtensionType.SupportedVersions);
            w.WriteVector8(Tls12 is null ? [0x03, 0x04] : [0x03, 0x04, 0x03, 0x03]);
            w.EndVector(ext);
        }
        {
            // record_size_limit (RFC 8449): the client takes full-size records; the server may ask for smaller ones.
            var ext = Begin(w, ExtensionType.RecordSizeLimit);
            w.WriteUInt16(RecordSizeLimitOffered);
            w.EndVector(ext);
        }
        if (Cookie is not null)
        {
            var ext = Begin(w, ExtensionType.Cookie);
            w.WriteVector16(Cookie);
            w.EndVector(ext);
        }
        if (PskModes.Count > 0)
        {
            var ext = Begin(w, ExtensionType.PskKeyExchangeModes);
            var list = w.BeginVector(1);
            foreach (var m in PskModes) w.WriteUInt8((byte)m);
            w.EndVector(list);
            w.EndVector(ext);
        }
        if (OfferTls13 && Groups.Count > 0)
        {
            var ext = Begin(w, ExtensionType.KeyShare);
            var list = w.BeginVector(2);
            foreach (var (group, key) in KeyShares)
            {
                w.WriteUInt16((ushort)group);
                w.WriteVector16(key);
            }
            w.EndVector(list);
            w.EndVector(ext);
        }
        if (Alpn.Count > 0)
        {
            var ext = Begin(w, ExtensionType.ApplicationLayerProtocolNegotiation);
            var list = w.BeginVector(2);
            foreach (var p in Alpn) w.WriteVector8(Encoding.ASCII.GetBytes(p));
            w.EndVector(list);
            w.EndVector(ext);
        }
        Tls12?.WriteExtensions(w);
        if (EarlyData)
        {
            var ext = Begin(w, ExtensionType.EarlyData);
            w.EndVector(ext);
        }
        if (PskIdentities.Count > 0)
        {
            var ext = Begin(w, ExtensionType.PreSharedKey);
            var identities = w.BeginVector(2);
            foreach (var id in PskIdentities)
            {
                w.WriteVector16(id.Identity);
                w.WriteUInt32(id.ObfuscatedAge);
            }
            w.EndVector(identities);
            bindersOffset = w.Length;
            var binders = w.BeginVector(2);
            foreach (var _ in PskIdentities) w.WriteVector8(new byte[BinderLength]);
            w.EndVector(binders);
            w.EndVector(ext);
        }
    }

    private static int Begin(TlsWriter w, ExtensionType type)
    {
        w.WriteUInt16((ushort)type);
        return w.BeginVector(2);
    }
}
