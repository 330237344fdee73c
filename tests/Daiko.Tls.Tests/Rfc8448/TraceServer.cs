using System.Buffers.Binary;
using System.Security.Cryptography;
using NSec.Cryptography;

namespace Daiko.Tls.Tests.Rfc8448;

/// <summary>
/// TLS 1.3 key schedule written again for the test side (RFC 8446 §7.1), with SHA-256 and
/// AES-128-GCM only: independent of the engine's own Hkdf13, so a handshake against
/// <see cref="TraceServer"/> checks the engine against a second implementation.
/// </summary>
internal static class TestKeySchedule
{
    public static byte[] Hash(params byte[][] messages)
    {
        using var h = System.Security.Cryptography.IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var m in messages) h.AppendData(m);
        return h.GetHashAndReset();
    }

    public static byte[] Extract(byte[] salt, byte[] ikm) =>
        HKDF.Extract(HashAlgorithmName.SHA256, ikm.Length == 0 ? new byte[32] : ikm, salt.Length == 0 ? new byte[32] : salt);

    public static byte[] ExpandLabel(byte[] secret, string label, byte[] context, int length)
    {
        var full = System.Text.Encoding.ASCII.GetBytes("tls13 " + label);
        var info = new byte[2 + 1 + full.Length + 1 + context.Length];
        BinaryPrimitives.WriteUInt16BigEndian(info, (ushort)length);
        info[2] = (byte)full.Length;
        full.CopyTo(info, 3);
        info[3 + full.Length] = (byte)context.Length;
        context.CopyTo(info, 4 + full.Length);
        return HKDF.Expand(HashAlgorithmName.SHA256, secret, length, info);
    }

    public static byte[] DeriveSecret(byte[] secret, string label, byte[] transcriptHash) => ExpandLabel(secret, label, transcriptHash, 32);

    public static byte[] Derived(byte[] secret) => DeriveSecret(secret, "derived", Hash());

    public static byte[] FinishedMac(byte[] trafficSecret, byte[] transcriptHash) =>
        HMACSHA256.HashData(ExpandLabel(trafficSecret, "finished", [], 32), transcriptHash);

    public static byte[] FinishedMessage(byte[] trafficSecret, byte[] transcriptHash) =>
        [20, 0, 0, 32, .. FinishedMac(trafficSecret, transcriptHash)];

    public static byte[] X25519(byte[] privateKey, byte[] peerPublicKey)
    {
        var algorithm = KeyAgreementAlgorithm.X25519;
        using var key = Key.Import(algorithm, privateKey, KeyBlobFormat.RawPrivateKey);
        var peer = PublicKey.Import(algorithm, peerPublicKey, KeyBlobFormat.RawPublicKey);
        using var shared = algorithm.Agree(key, peer, new SharedSecretCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport })
            ?? throw new InvalidOperationException("x25519 agreement gave the all-zero secret");
        return shared.Export(SharedSecretBlobFormat.RawSharedSecret);
    }

    /// <summary>The CertificateVerify signed content (RFC 8446 §4.4.3).</summary>
    public static byte[] SignedContent(bool server, byte[] transcriptHash)
    {
        var context = System.Text.Encoding.ASCII.GetBytes(server ? "TLS 1.3, server CertificateVerify" : "TLS 1.3, client CertificateVerify");
        return [.. Enumerable.Repeat((byte)0x20, 64), .. context, 0, .. transcriptHash];
    }
}

/// <summary>AES-128-GCM record protection for one direction (RFC 8446 §5.2), written for the test side.</summary>
internal sealed class TestRecordCipher(byte[] trafficSecret)
{
    private readonly byte[] _key = TestKeySchedule.ExpandLabel(trafficSecret, "key", [], 16);
    private readonly byte[] _iv = TestKeySchedule.ExpandLabel(trafficSecret, "iv", [], 12);
    private ulong _sequence;

    public byte[] Key => _key;

    public byte[] Iv => _iv;

    public byte[] Seal(byte contentType, byte[] content)
    {
        var inner = new byte[content.Length + 1];
        content.CopyTo(inner, 0);
        inner[^1] = contentType;
        var record = new byte[5 + inner.Length + 16];
        record[0] = 0x17;
        record[1] = 0x03;
        record[2] = 0x03;
        BinaryPrimitives.WriteUInt16BigEndian(record.AsSpan(3), (ushort)(inner.Length + 16));
        using var gcm = new AesGcm(_key, 16);
        gcm.Encrypt(NextNonce(), inner, record.AsSpan(5, inner.Length), record.AsSpan(5 + inner.Length), record.AsSpan(0, 5));
        return record;
    }

    /// <summary>Opens one protected record (header included): its inner content type and content.</summary>
    public (byte Type, byte[] Content) Open(byte[] record)
    {
        var body = record.AsSpan(5);
        var inner = new byte[body.Length - 16];
        using var gcm = new AesGcm(_key, 16);
        gcm.Decrypt(NextNonce(), body[..^16], body[^16..], inner, record.AsSpan(0, 5));
        var end = inner.Length - 1;
        while (inner[end] == 0) end--;
        return (inner[end], inner[..end]);
    }

    private byte[] NextNonce()
    {
        var nonce = (byte[])_iv.Clone();
        for (var i = 0; i < 8; i++) nonce[^(i + 1)] ^= (byte)(_sequence >> (8 * i));
        _sequence++;
        return nonce;
    }
}

/// <summary>How a <see cref="TraceServer"/> alters what it sends, to play a forger or a broken network.</summary>
internal sealed record ServerAlterations
{
    /// <summary>Alters the ServerHello message (the keys follow what is sent; the signature does not).</summary>
    public Func<byte[], byte[]>? ServerHello { get; init; }

    /// <summary>
    /// Alters EncryptedExtensions..CertificateVerify as one byte string, then computes Finished over what
    /// is sent: a forger who holds the handshake keys but not the server's signing key.
    /// </summary>
    public Func<byte[], byte[]>? SignedFlight { get; init; }

    /// <summary>Alters EncryptedExtensions..Finished after Finished is computed: damage in transit.</summary>
    public Func<byte[], byte[]>? WholeFlight { get; init; }

    /// <summary>
    /// Alters the bytes of the server's handshake records (ServerHello and the encrypted flight), headers
    /// and all; the server then sends nothing after them, so a truncation ends the stream.
    /// </summary>
    public Func<byte[], byte[]>? Records { get; init; }
}

/// <summary>
/// The RFC 8448 server of one section, answering the engine's own ClientHello: it sends the trace's
/// ServerHello, (CertificateRequest), Certificate, NewSessionTicket and application data verbatim, its
/// EncryptedExtensions less anything the engine did not offer, with the trace's x25519 key, and signs CertificateVerify afresh with the trace's RSA
/// key (RFC 8448 §2) over the transcript the engine's ClientHello produced. Keys come from
/// <see cref="TestKeySchedule"/>, not from the engine. A read with nothing to say is end of stream.
/// </summary>
internal sealed class TraceServer : DuplexTestStream
{
    // RSA-PSS signatures are randomized; one per transcript keeps an honest server's bytes the same every run.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte[]> Signatures = new();

    private readonly Rfc8448Trace _trace;
    private readonly ServerAlterations _alter;
    private readonly bool _requestClientCertificate;
    private readonly MemoryStream _toClient = new();
    private readonly MemoryStream _fromClient = new();
    private byte[]? _clientHello;

    private readonly Rfc8448Trace _certificateTrace;

    /// <param name="certificateFrom">The section whose server Certificate to send; it must carry the §2 RSA key (§6's does not).</param>
    public TraceServer(Rfc8448Trace trace, ServerAlterations? alterations = null, bool requestClientCertificate = false, Rfc8448Trace? certificateFrom = null)
    {
        _trace = trace;
        _certificateTrace = certificateFrom ?? trace;
        _alter = alterations ?? new ServerAlterations();
        _requestClientCertificate = requestClientCertificate;
    }

    /// <summary>Every byte the client wrote.</summary>
    public byte[] Written => _fromClient.ToArray();

    /// <summary>The engine's ClientHello message (without record header), once it was written.</summary>
    public byte[] ClientHello => _clientHello ?? throw new InvalidOperationException("no ClientHello yet");

    /// <summary>The ECDHE output of the trace's server key and the engine's key share.</summary>
    public byte[] SharedSecret { get; private set; } = [];

    /// <summary>Secrets this server derived, under the engine's key-log labels, plus "handshake" and "master".</summary>
    public Dictionary<string, byte[]> Secrets { get; } = new();

    /// <summary>The Finished message the client must send.</summary>
    public byte[] ExpectedClientFinished { get; private set; } = [];

    /// <summary>The handshake messages the client sent after the server's flight (decrypted), in order.</summary>
    public List<byte[]> ClientHandshakeMessages { get; } = new();

    /// <summary>EncryptedExtensions..CertificateVerify as an honest server sends them.</summary>
    public byte[] SignedFlight { get; private set; } = [];

    /// <summary>The handshake transcript up to the server's Finished (for checking a client CertificateVerify).</summary>
    public byte[] TranscriptThroughServerFinished { get; private set; } = [];


    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(_toClient.Read(buffer.Span));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        _fromClient.Write(buffer);
        if (_clientHello is null && Records(Written).FirstOrDefault() is { } first && first[0] == 0x16)
        {
            _clientHello = first[5..];
            Respond(_clientHello);
        }
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        Write(buffer.Span);
        return ValueTask.CompletedTask;
    }

    /// <summary>Splits bytes into complete records (header included).</summary>
    public static IEnumerable<byte[]> Records(byte[] bytes)
    {
        for (var p = 0; p + 5 <= bytes.Length;)
        {
            var length = (bytes[p + 3] << 8) | bytes[p + 4];
            if (p + 5 + length > bytes.Length) yield break;
            yield return bytes[p..(p + 5 + length)];
            p += 5 + length;
        }
    }

    /// <summary>
    /// Reads what the client wrote after its ClientHello: handshake messages under the client handshake
    /// keys, then application data and alerts under the application keys. Returns the records' inner
    /// (type, content); a plaintext alert is returned as it is.
    /// </summary>
    public List<(byte Type, byte[] Content)> ClientRecords()
    {
        var result = new List<(byte, byte[])>();
        if (!Secrets.TryGetValue("c hs traffic", out var handshakeSecret)) return Records(Written).Skip(1).Select(r => (r[0], r[5..])).ToList();
        var cipher = new TestRecordCipher(handshakeSecret);
        var finished = false;
        ClientHandshakeMessages.Clear();
        foreach (var record in Records(Written).Skip(1))
        {
            if (record[0] is 0x14) continue; // compatibility change_cipher_spec
            if (record[0] is 0x15)
            {
                result.Add((0x15, record[5..]));
                continue;
            }
            var (type, content) = cipher.Open(record);
            result.Add((type, content));
            if (type == 0x16 && !finished)
            {
                for (var p = 0; p < content.Length;)
                {
                    var length = (content[p + 1] << 16) | (content[p + 2] << 8) | content[p + 3];
                    var message = content[p..(p + 4 + length)];
                    ClientHandshakeMessages.Add(message);
                    p += 4 + length;
                    if (message[0] == 20)
                    {
                        finished = true;
                        cipher = new TestRecordCipher(Secrets["c ap traffic"]);
                    }
                }
            }
        }
        return result;
    }

    /// <summary>The alert description of the last alert the client sent, read from the wire.</summary>
    public byte? LastClientAlert() =>
        ClientRecords().LastOrDefault(r => r.Type == 0x15) is { Content: { Length: 2 } alert } ? alert[1] : null;

    private void Respond(byte[] clientHello)
    {
        var serverHello = _trace.Get("{server}  construct a ServerHello", "ServerHello");
        var sentServerHello = _alter.ServerHello?.Invoke(serverHello.ToArray()) ?? serverHello;
        SharedSecret = TestKeySchedule.X25519(_trace.Get("{server}  create an ephemeral x25519", "private key"), ClientKeyShare(clientHello));
        var handshake = TestKeySchedule.Extract(TestKeySchedule.Derived(TestKeySchedule.Extract([], [])), SharedSecret);
        Secrets["handshake"] = handshake;
        var helloHash = TestKeySchedule.Hash(clientHello, sentServerHello);
        var clientHandshake = Secrets["c hs traffic"] = TestKeySchedule.DeriveSecret(handshake, "c hs traffic", helloHash);
        var serverHandshake = Secrets["s hs traffic"] = TestKeySchedule.DeriveSecret(handshake, "s hs traffic", helloHash);

        // A server may answer only what was offered (RFC 8446 §4.2): this one leaves out any extension of
        // the RFC's EncryptedExtensions that the engine's ClientHello did not carry.
        var encryptedExtensions = OnlyOffered(_trace.Get("{server}  construct an EncryptedExtensions", "EncryptedExtensions"), clientHello);
        var certificateRequest = _requestClientCertificate ? _trace.Get("{server}  construct a CertificateRequest", "CertificateRequest") : [];
        var certificate = _certificateTrace.Get("{server}  construct a Certificate", "Certificate");
        // The signature covers what an honest server sent: a forger's changes are not signed.
        var signedHash = TestKeySchedule.Hash(clientHello, serverHello, encryptedExtensions, certificateRequest, certificate);
        var signature = Signatures.GetOrAdd(Convert.ToHexString(signedHash), _ =>
        {
            using var rsa = ServerKey(_trace);
            return rsa.SignData(TestKeySchedule.SignedContent(server: true, signedHash), HashAlgorithmName.SHA256, RSASignaturePadding.Pss);
        });
        byte[] certificateVerify = [15, 0, (byte)((signature.Length + 4) >> 8), (byte)(signature.Length + 4), 0x08, 0x04, (byte)(signature.Length >> 8), (byte)signature.Length, .. signature];
        byte[] signedFlight = [.. encryptedExtensions, .. certificateRequest, .. certificate, .. certificateVerify];
        SignedFlight = signedFlight;
        var sentSigned = _alter.SignedFlight?.Invoke(signedFlight.ToArray()) ?? signedFlight;
        var serverFinished = TestKeySchedule.FinishedMessage(serverHandshake, TestKeySchedule.Hash(clientHello, sentServerHello, sentSigned));
        byte[] flight = [.. sentSigned, .. serverFinished];
        var sentFlight = _alter.WholeFlight?.Invoke(flight.ToArray()) ?? flight;

        var master = Secrets["master"] = TestKeySchedule.Extract(TestKeySchedule.Derived(handshake), []);
        TranscriptThroughServerFinished = [.. clientHello, .. sentServerHello, .. flight];
        var finishedHash = TestKeySchedule.Hash(TranscriptThroughServerFinished);
        Secrets["c ap traffic"] = TestKeySchedule.DeriveSecret(master, "c ap traffic", finishedHash);
        var serverApplication = Secrets["s ap traffic"] = TestKeySchedule.DeriveSecret(master, "s ap traffic", finishedHash);
        Secrets["exp master"] = TestKeySchedule.DeriveSecret(master, "exp master", finishedHash);
        ExpectedClientFinished = TestKeySchedule.FinishedMessage(clientHandshake, finishedHash);

        var output = new List<byte>();
        output.AddRange([0x16, 0x03, 0x03, (byte)(sentServerHello.Length >> 8), (byte)sentServerHello.Length]);
        output.AddRange(sentServerHello);
        var handshakeCipher = new TestRecordCipher(serverHandshake);
        foreach (var chunk in sentFlight.Chunk(1 << 14)) output.AddRange(handshakeCipher.Seal(0x16, chunk));
        if (_alter.Records is { } alterRecords)
        {
            var altered = alterRecords(output.ToArray());
            output.Clear();
            output.AddRange(altered);
        }
        if (!_requestClientCertificate && _alter.Records is null)
        {
            // Without client authentication the resumption secret is known now: the client's Finished is fixed.
            var resumption = Secrets["res master"] = TestKeySchedule.DeriveSecret(master, "res master", TestKeySchedule.Hash(TranscriptThroughServerFinished, ExpectedClientFinished));
            var ticket = _trace.Get("{server}  construct a NewSessionTicket", "NewSessionTicket");
            Secrets["ticket psk"] = TestKeySchedule.ExpandLabel(resumption, "resumption", TicketNonce(ticket), 32);
            var applicationCipher = new TestRecordCipher(serverApplication);
            output.AddRange(applicationCipher.Seal(0x16, ticket));
            output.AddRange(applicationCipher.Seal(0x17, _trace.Get("{server}  send application_data record", "payload")));
            output.AddRange(applicationCipher.Seal(0x15, [1, 0]));
        }
        _toClient.Write(output.ToArray());
        _toClient.Position = 0;
    }

    /// <summary>An EncryptedExtensions message keeping only the extensions the ClientHello offered.</summary>
    public static byte[] OnlyOffered(byte[] encryptedExtensions, byte[] clientHello)
    {
        var offered = ClientHelloParts.Split(clientHello).Extensions.Select(e => e.Item1).ToHashSet();
        var kept = new List<byte>();
        for (var p = 6; p < encryptedExtensions.Length;)
        {
            var type = (ushort)((encryptedExtensions[p] << 8) | encryptedExtensions[p + 1]);
            var length = (encryptedExtensions[p + 2] << 8) | encryptedExtensions[p + 3];
            if (offered.Contains(type)) kept.AddRange(encryptedExtensions[p..(p + 4 + length)]);
            p += 4 + length;
        }
        var body = 2 + kept.Count;
        return [8, (byte)(body >> 16), (byte)(body >> 8), (byte)body, (byte)(kept.Count >> 8), (byte)kept.Count, .. kept];
    }

    private static byte[] TicketNonce(byte[] newSessionTicket) => newSessionTicket[13..(13 + newSessionTicket[12])];

    /// <summary>The x25519 key share of a ClientHello message.</summary>
    public static byte[] ClientKeyShare(byte[] clientHello) =>
        ClientHelloParts.Split(clientHello).Extensions.Single(e => e.Item1 == 51).Item2 is var data
            && (data[2] << 8 | data[3]) == 0x001d ? data[6..(6 + ((data[4] << 8) | data[5]))] : throw new InvalidOperationException("no x25519 share first");

    /// <summary>The RSA server key of RFC 8448 §2.</summary>
    public static RSA ServerKey(Rfc8448Trace trace)
    {
        var k = trace.PrivateKeys;
        var rsa = RSA.Create();
        rsa.ImportParameters(new RSAParameters
        {
            Modulus = k["modulus (public)"],
            Exponent = k["public exponent"],
            D = k["private exponent"],
            P = k["prime1"],
            Q = k["prime2"],
            DP = k["exponent1"],
            DQ = k["exponent2"],
            InverseQ = k["coefficient"],
        });
        return rsa;
    }
}
