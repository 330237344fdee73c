namespace Daiko.Tls;

/// <summary>TLS 1.3 cipher suites (RFC 8446 §B.4) and the TLS 1.2 ECDHE AEAD suites (RFC 5289, RFC 7905).</summary>
public enum CipherSuite : ushort
{
    Aes128GcmSha256 = 0x1301,
    Aes256GcmSha384 = 0x1302,
    ChaCha20Poly1305Sha256 = 0x1303,
    EcdheEcdsaAes128GcmSha256 = 0xc02b,
    EcdheEcdsaAes256GcmSha384 = 0xc02c,
    EcdheRsaAes128GcmSha256 = 0xc02f,
    EcdheRsaAes256GcmSha384 = 0xc030,
    EcdheRsaChaCha20Poly1305Sha256 = 0xcca8,
    EcdheEcdsaChaCha20Poly1305Sha256 = 0xcca9,
}

/// <summary>The protocol versions a client offers (<see cref="TlsClientOptions.Versions"/>) or a connection runs.</summary>
[Flags]
public enum TlsVersions
{
    Tls12 = 1,
    Tls13 = 2,
    Both = Tls12 | Tls13,
}

/// <summary>Key exchange groups (RFC 8446 §4.2.7).</summary>
public enum NamedGroup : ushort
{
    Secp256r1 = 0x0017,
    Secp384r1 = 0x0018,
    Secp521r1 = 0x0019,
    X25519 = 0x001d,
    X448 = 0x001e,
}

/// <summary>PSK key exchange modes (RFC 8446 §4.2.9).</summary>
public enum PskKeyExchangeMode : byte
{
    PskKe = 0,
    PskDheKe = 1,
}

internal enum ContentType : byte
{
    ChangeCipherSpec = 20,
    Alert = 21,
    Handshake = 22,
    ApplicationData = 23,
}

internal enum HandshakeType : byte
{
    HelloRequest = 0,
    ClientHello = 1,
    ServerHello = 2,
    NewSessionTicket = 4,
    EndOfEarlyData = 5,
    EncryptedExtensions = 8,
    Certificate = 11,
    ServerKeyExchange = 12,
    CertificateRequest = 13,
    ServerHelloDone = 14,
    CertificateVerify = 15,
    ClientKeyExchange = 16,
    Finished = 20,
    KeyUpdate = 24,
    MessageHash = 254,
}

internal enum ExtensionType : ushort
{
    ServerName = 0,
    MaxFragmentLength = 1,
    StatusRequest = 5,
    SupportedGroups = 10,
    EcPointFormats = 11,
    SignatureAlgorithms = 13,
    UseSrtp = 14,
    Heartbeat = 15,
    ApplicationLayerProtocolNegotiation = 16,
    SignedCertificateTimestamp = 18,
    ClientCertificateType = 19,
    ServerCertificateType = 20,
    Padding = 21,
    ExtendedMasterSecret = 23,
    RecordSizeLimit = 28,
    SessionTicket = 35,
    PreSharedKey = 41,
    EarlyData = 42,
    SupportedVersions = 43,
    Cookie = 44,
    PskKeyExchangeModes = 45,
    CertificateAuthorities = 47,
    OidFilters = 48,
    PostHandshakeAuth = 49,
    SignatureAlgorithmsCert = 50,
    KeyShare = 51,
    RenegotiationInfo = 0xff01,
}
