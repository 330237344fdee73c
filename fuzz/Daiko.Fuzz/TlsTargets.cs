using System.Security.Cryptography;
using Daiko.Tls;
using Daiko.Tls.Crypto;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Messages;
using Daiko.Tls.Records;
using Daiko.Tls.Tls12;

namespace Daiko.Fuzz;

/// <summary>
/// The TLS client's parsers, fed as a server would feed them: a byte stream of records read by the
/// record layer, reassembled into handshake messages, each handed to the parser of its type. A parser
/// may refuse with a <see cref="TlsException"/> only.
/// </summary>
internal static class TlsTargets
{
    public static readonly FuzzTarget Tls13 = new("tls13",
        "TLS 1.3 server messages (ServerHello/HelloRetryRequest and its key share, EncryptedExtensions, Certificate, CertificateRequest, CertificateVerify, NewSessionTicket, KeyUpdate) in plaintext records",
        input => ReadHandshake(input, Parse13), e => e is TlsException);

    public static readonly FuzzTarget Tls12 = new("tls12",
        "TLS 1.2 server messages (ServerHello, Certificate, ServerKeyExchange and its ECDHE point, CertificateRequest, ServerHelloDone, NewSessionTicket) in plaintext records",
        input => ReadHandshake(input, Parse12), e => e is TlsException);

    public static readonly FuzzTarget Records = new("records",
        "the record layer with read protection on (first byte: TLS 1.3 AES-GCM, TLS 1.3 ChaCha20, TLS 1.2 AES-GCM, TLS 1.2 ChaCha20, TLS 1.2 keys pending a change_cipher_spec, none); the rest is the transport",
        ReadProtected, e => e is TlsException);

    /// <summary>The fixed traffic secret and TLS 1.2 keys the records target opens with (the seeds are sealed with them).</summary>
    internal static readonly byte[] Secret = [.. Enumerable.Range(1, 32).Select(i => (byte)i)];
    internal static readonly byte[] Key12 = [.. Enumerable.Range(40, 32).Select(i => (byte)i)];
    internal static readonly byte[] Iv12 = [.. Enumerable.Range(80, 12).Select(i => (byte)i)];

    internal const int Modes = 6;

    /// <summary>The read protection of a records-target mode, or null for none; <paramref name="pending"/> when it waits for a change_cipher_spec.</summary>
    internal static RecordProtection? Protection(int mode, out bool pending)
    {
        pending = mode == 4;
        return mode switch
        {
            0 => new RecordProtection(CipherSuiteInfo.Aes128Gcm, (byte[])Secret.Clone()),
            1 => new RecordProtection(CipherSuiteInfo.ChaCha20, (byte[])Secret.Clone()),
            2 or 4 => new RecordProtection(CipherSuiteInfo.FindTls12(CipherSuite.EcdheEcdsaAes128GcmSha256)!, Key12[..16], Iv12[..4], 0),
            3 => new RecordProtection(CipherSuiteInfo.FindTls12(CipherSuite.EcdheRsaChaCha20Poly1305Sha256)!, Key12, Iv12, 0),
            _ => null,
        };
    }

    private static void ReadHandshake(byte[] input, Action<HandshakeMessage> parse)
    {
        using var layer = new RecordLayer(new MemoryStream(input, writable: false), null);
        Drain(layer, parse);
    }

    private static void ReadProtected(byte[] input)
    {
        if (input.Length == 0) return;
        using var layer = new RecordLayer(new MemoryStream(input, 1, input.Length - 1, writable: false), null);
        var protection = Protection(input[0] % Modes, out var pending);
        if (protection is not null)
        {
            if (pending) layer.PendingReadProtection = protection;
            else layer.SetReadProtection(protection);
        }
        Drain(layer, _ => { });
    }

    private static void Drain(RecordLayer layer, Action<HandshakeMessage> parse)
    {
        while (FuzzTargets.Sync(layer.ReadRecordAsync(CancellationToken.None)) is { } record)
        {
            var content = record.Content;
            switch (record.Type)
            {
                case ContentType.Handshake:
                    layer.AddHandshakeData(content.Span);
                    while (layer.TryDequeueHandshake(out var message)) parse(message);
                    break;
                case ContentType.Alert:
                    _ = RecordLayer.AlertReceived(content.Span);
                    break;
                default:
                    layer.NoteRecordWithoutData("application data");
                    break;
            }
        }
    }

    private static void Parse13(HandshakeMessage message)
    {
        var body = message.Body;
        switch (message.Type)
        {
            case HandshakeType.ServerHello:
                _ = ServerHello12.SelectsTls12OrBelow(body);
                var hello = ServerHello.Parse(body);
                if (hello.KeyShareGroup is { } group && hello.KeyShare is { } share) Agree(group, share);
                break;
            case HandshakeType.EncryptedExtensions:
                EncryptedExtensions.Parse(body);
                break;
            case HandshakeType.Certificate:
                CertificateMessage.Parse(body);
                break;
            case HandshakeType.CertificateRequest:
                CertificateRequest.Parse(body);
                break;
            case HandshakeType.CertificateVerify:
                FuzzTargets.SameBytes(CertificateVerify.Parse(body).Encode(), message.Bytes, "CertificateVerify");
                break;
            case HandshakeType.NewSessionTicket:
                NewSessionTicket.Parse(body);
                break;
            case HandshakeType.KeyUpdate:
                SimpleMessages.ParseKeyUpdate(body);
                break;
        }
    }

    private static void Parse12(HandshakeMessage message)
    {
        var body = message.Body;
        switch (message.Type)
        {
            case HandshakeType.ServerHello:
                if (ServerHello12.SelectsTls12OrBelow(body)) _ = ServerHello12.Parse(body).CarriesDowngradeSentinel;
                break;
            case HandshakeType.Certificate:
                FuzzTargets.SameBytes(Certificate12.Parse(body).Encode(), message.Bytes, "TLS 1.2 Certificate");
                break;
            case HandshakeType.ServerKeyExchange:
                var exchange = ServerKeyExchange12.Parse(body);
                _ = exchange.SignedContent(new byte[32], new byte[32]);
                Agree(exchange.Group, exchange.PublicKey);
                break;
            case HandshakeType.CertificateRequest:
                _ = CertificateRequest12.Parse(body).AcceptsKeyFor(SignatureScheme.EcdsaSecp256r1Sha256);
                break;
            case HandshakeType.ServerHelloDone:
                SimpleMessages12.EnsureEmpty(body, "ServerHelloDone");
                break;
            case HandshakeType.NewSessionTicket:
                NewSessionTicket12.Parse(body);
                break;
        }
    }

    /// <summary>The client's side of the key exchange with the server's share, as the handshake does it.</summary>
    internal static void Agree(NamedGroup group, byte[] share)
    {
        if (!KeyShare.IsSupported(group)) return;
        using var mine = KeyShare.Create(group);
        var secret = mine.Agree(share);
        CryptographicOperations.ZeroMemory(secret);
    }
}
