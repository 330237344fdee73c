using System.Formats.Asn1;
using System.Formats.Cbor;
using System.Security.Cryptography;
using System.Security.Cryptography.Cose;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.RegularExpressions;
using Daiko.Protocol.Codecs;
using Daiko.Tls;
using Daiko.Tls.Crypto;
using Daiko.Tls.Messages;
using Daiko.Tls.Records;

namespace Daiko.Fuzz;

/// <summary>
/// Seed inputs made from real messages: the server flights of the RFC 8448 traces, TLS 1.2 server
/// messages and records built by the product's own writers, tickets and exported sessions, money
/// messages signed as a market, bank and card sign them, and certificates, keys and PKCS#12 files.
/// (The control frames were seeded once from the test suite's sample of every message.)
/// </summary>
internal static partial class Seeds
{
    public static IEnumerable<byte[]> For(string target, string rfc8448Path) => target switch
    {
        "tls13" => Tls13(rfc8448Path),
        "tls12" => Tls12Messages().Select(m => Record(ContentType.Handshake, m)).Append(Record(ContentType.Handshake, [.. Tls12Messages().SelectMany(m => m)])),
        "records" => ProtectedRecords(rfc8448Path),
        "codecs" => Codecs(),
        "money" => MoneySeeds.All(),
        "pki" => PkiSeeds.All(),
        "proxy" => ProxyTarget.Seeds(),
        _ => [],
    };

    /// <summary>The server's handshake messages of each RFC 8448 section, header included.</summary>
    internal static List<List<byte[]>> Rfc8448ServerFlights(string path)
    {
        var flights = new List<List<byte[]>>();
        List<byte> current = [];
        var expected = 0;
        var wanted = false;
        foreach (var line in File.ReadLines(path))
        {
            if (expected > 0)
            {
                // A value may run across a page break: collect hex lines until it has all its octets.
                if (HexLine().IsMatch(line)) current.AddRange(Hex(line));
                if (current.Count >= expected)
                {
                    flights[^1].Add([.. current]);
                    expected = 0;
                }
                continue;
            }
            if (SectionHeading().IsMatch(line)) flights.Add([]);
            if (ServerMessageStep().IsMatch(line)) wanted = true;
            else if (line.StartsWith("   {", StringComparison.Ordinal)) wanted = false;
            var value = ValueLine().Match(line);
            if (wanted && value.Success && flights.Count > 0)
            {
                expected = int.Parse(value.Groups[1].Value);
                current = [.. Hex(value.Groups[2].Value)];
                wanted = false;
            }
        }
        return flights.Where(f => f.Count > 0).ToList();

        static IEnumerable<byte> Hex(string text) => text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(h => Convert.ToByte(h, 16));
    }

    private static IEnumerable<byte[]> Tls13(string path)
    {
        foreach (var flight in Rfc8448ServerFlights(path))
        {
            foreach (var message in flight) yield return Record(ContentType.Handshake, message);
            var all = flight.SelectMany(m => m).ToArray();
            yield return Record(ContentType.Handshake, all);
            // One message across two records, as a server may fragment it.
            var half = all.Length / 2;
            yield return [.. Record(ContentType.Handshake, all[..half]), .. Record(ContentType.Handshake, all[half..])];
        }
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var certificate = PkiSeeds.SelfSigned(key);
        yield return Record(ContentType.Handshake, new CertificateMessage([], [certificate, certificate]).Encode());
        yield return [.. Record(ContentType.ChangeCipherSpec, [1]), .. Record(ContentType.Handshake, SimpleMessages.KeyUpdate(true)), .. Record(ContentType.Alert, [2, 40])];
    }

    internal static byte[] Record(ContentType type, ReadOnlySpan<byte> content)
    {
        var record = new byte[5 + content.Length];
        record[0] = (byte)type;
        record[1] = 3;
        record[2] = 3;
        record[3] = (byte)(content.Length >> 8);
        record[4] = (byte)content.Length;
        content.CopyTo(record.AsSpan(5));
        return record;
    }

    /// <summary>A TLS 1.2 server's first flight (ECDSA), its CertificateRequest and its NewSessionTicket.</summary>
    private static IEnumerable<byte[]> Tls12Messages()
    {
        var w = new TlsWriter(512);
        var msg = w.BeginHandshake(HandshakeType.ServerHello);
        w.WriteUInt16(0x0303);
        w.WriteBytes(SHA256.HashData("server random"u8));
        w.WriteVector8(SHA256.HashData("session id"u8));
        w.WriteUInt16((ushort)CipherSuite.EcdheEcdsaAes128GcmSha256);
        w.WriteUInt8(0);
        var extensions = w.BeginVector(2);
        foreach (var (type, data) in new (ExtensionType, byte[])[]
        {
            (ExtensionType.RenegotiationInfo, [0]),
            (ExtensionType.ExtendedMasterSecret, []),
            (ExtensionType.SessionTicket, []),
            (ExtensionType.EcPointFormats, [1, 0]),
            (ExtensionType.ServerName, []),
            (ExtensionType.RecordSizeLimit, [0x40, 0x00]),
            (ExtensionType.ApplicationLayerProtocolNegotiation, [0, 3, 2, (byte)'h', (byte)'2']),
        })
        {
            w.WriteUInt16((ushort)type);
            w.WriteVector16(data);
        }
        w.EndVector(extensions);
        w.EndVector(msg);
        yield return w.ToArray();

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        yield return new Daiko.Tls.Tls12.Certificate12([PkiSeeds.SelfSigned(key)]).Encode();

        using var share = KeyShare.Create(NamedGroup.Secp256r1);
        w = new TlsWriter(256);
        msg = w.BeginHandshake(HandshakeType.ServerKeyExchange);
        w.WriteUInt8(3);
        w.WriteUInt16((ushort)NamedGroup.Secp256r1);
        w.WriteVector8(share.PublicKey);
        w.WriteUInt16((ushort)SignatureScheme.EcdsaSecp256r1Sha256);
        w.WriteVector16(key.SignData(share.PublicKey, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence));
        w.EndVector(msg);
        yield return w.ToArray();

        w = new TlsWriter(256);
        msg = w.BeginHandshake(HandshakeType.CertificateRequest);
        w.WriteVector8([1, 64]);
        w.WriteVector16([0x04, 0x03, 0x08, 0x04]);
        var cas = w.BeginVector(2);
        w.WriteVector16([0x30, 0x00]);
        w.EndVector(cas);
        w.EndVector(msg);
        yield return w.ToArray();

        yield return [(byte)HandshakeType.ServerHelloDone, 0, 0, 0];

        w = new TlsWriter(256);
        msg = w.BeginHandshake(HandshakeType.NewSessionTicket);
        w.WriteUInt32(7200);
        w.WriteVector16(SHA256.HashData("ticket"u8));
        w.EndVector(msg);
        yield return w.ToArray();
    }

    /// <summary>For each records-target mode, a stream of records sealed with that mode's keys.</summary>
    private static IEnumerable<byte[]> ProtectedRecords(string path)
    {
        var messages = Rfc8448ServerFlights(path)[0];
        for (var mode = 0; mode < TlsTargets.Modes; mode++)
        {
            using var seal = TlsTargets.Protection(mode, out var pending);
            var stream = new List<byte> { (byte)mode };
            if (seal is null)
            {
                stream.AddRange(Record(ContentType.Handshake, messages[0]));
                yield return [.. stream];
                continue;
            }
            if (pending) stream.AddRange(Record(ContentType.ChangeCipherSpec, [1]));
            var output = new byte[RecordProtection.HeaderLength + RecordProtection.MaxCiphertext];
            foreach (var (type, content, padding) in new (ContentType, byte[], int)[]
            {
                (ContentType.Handshake, [.. messages.Skip(1).SelectMany(m => m)], 0),
                (ContentType.ApplicationData, Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\n\r\n"), 16),
                (ContentType.Alert, [1, 0], 0),
            })
            {
                var n = seal.Seal(type, content, padding, output);
                stream.AddRange(output.AsSpan(0, n).ToArray());
            }
            yield return [.. stream];
        }
    }

    private static IEnumerable<byte[]> Codecs()
    {
        var received = DateTimeOffset.FromUnixTimeMilliseconds(1_760_000_000_000);
        yield return SessionTicketCodec.Encode(new SessionTicket([1, 2, 3, 4], new byte[32], CipherSuite.Aes128GcmSha256, "market.example", "h2", 7200, 12345, 16384, received, [0]));
        yield return SessionTicketCodec.Encode(new SessionTicket(new byte[100], new byte[48], CipherSuite.Aes256GcmSha384, null, null, 60, 0, 0, received, []));
        yield return SessionTicketCodec.Encode(new SessionTicket([7], new byte[48], CipherSuite.EcdheRsaAes128GcmSha256, "shop.example", null, 300, 0, 0, received, []) { Version = TlsVersions.Tls12 });
        yield return ExportedSessionCodec.Encode(new ExportedSession(CipherSuite.Aes128GcmSha256, new byte[32], new byte[32], 3, 4, new byte[32], "market.example", "h2", [5], [6, 7]));
        yield return ExportedSessionCodec.Encode(new ExportedSession(CipherSuite.EcdheEcdsaAes128GcmSha256, new byte[20], new byte[20], 1, 1, new byte[48], null, null, [], []));
        yield return ExportedSessionCodec.Encode(new ExportedSession(CipherSuite.ChaCha20Poly1305Sha256, new byte[32], new byte[32], 0, 0, new byte[32], "m", null, [], [0x17, 3, 3]));
    }

    [GeneratedRegex(@"^\d+\.\s+\S")]
    private static partial Regex SectionHeading();

    [GeneratedRegex(@"^\s{3}\{server\}\s+construct an? \w+ handshake message:")]
    private static partial Regex ServerMessageStep();

    [GeneratedRegex(@"^\s{6}\w+ \((\d+) octets\):\s*((?:[0-9a-f]{2}\s*)+)$")]
    private static partial Regex ValueLine();

    [GeneratedRegex(@"^\s+([0-9a-f]{2}\s*)+$")]
    private static partial Regex HexLine();
}
