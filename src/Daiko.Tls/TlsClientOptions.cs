namespace Daiko.Tls;

/// <summary>What the server asked for in its CertificateRequest.</summary>
public sealed record CertificateRequestInfo(
    IReadOnlyList<SignatureScheme> SignatureSchemes,
    IReadOnlyList<byte[]> CertificateAuthorities);

/// <summary>Options for one client connection. Immutable; validated when the handshake starts.</summary>
public sealed record TlsClientOptions
{
    /// <summary>
    /// SNI and the name (or IP address) the server certificate must match. <see cref="X509ChainValidator"/> refuses every
    /// certificate when it is null: a certificate that chains to a trusted root proves nothing about a server no name
    /// was asked of.
    /// </summary>
    public string? ServerName { get; init; }

    /// <summary>
    /// Whether the ClientHello names <see cref="ServerName"/> (server_name). False for an IP literal, which RFC 6066 §3
    /// keeps out of server_name; the certificate is still checked against it.
    /// </summary>
    public bool SendServerName { get; init; } = true;

    public IReadOnlyList<string> ApplicationProtocols { get; init; } = [];

    public IReadOnlyList<CipherSuite> CipherSuites { get; init; } =
        [CipherSuite.Aes128GcmSha256, CipherSuite.Aes256GcmSha384, CipherSuite.ChaCha20Poly1305Sha256];

    /// <summary>
    /// The versions offered in the one ClientHello. <see cref="TlsVersions.Tls13"/> alone (the default)
    /// writes exactly the ClientHello of a TLS 1.3-only client; adding <see cref="TlsVersions.Tls12"/>
    /// offers the TLS 1.2 profile too (ECDHE, AEAD suites, Extended Master Secret, tickets).
    /// </summary>
    public TlsVersions Versions { get; init; } = TlsVersions.Tls13;

    /// <summary>The TLS 1.2 suites offered when <see cref="Versions"/> includes TLS 1.2: ECDHE with AEAD only.</summary>
    public IReadOnlyList<CipherSuite> Tls12CipherSuites { get; init; } =
    [
        CipherSuite.EcdheEcdsaAes128GcmSha256, CipherSuite.EcdheRsaAes128GcmSha256,
        CipherSuite.EcdheEcdsaAes256GcmSha384, CipherSuite.EcdheRsaAes256GcmSha384,
        CipherSuite.EcdheEcdsaChaCha20Poly1305Sha256, CipherSuite.EcdheRsaChaCha20Poly1305Sha256,
    ];

    /// <summary>Offered groups; the first gets a key share, others cost a HelloRetryRequest if chosen.</summary>
    public IReadOnlyList<NamedGroup> Groups { get; init; } = [NamedGroup.X25519, NamedGroup.Secp256r1, NamedGroup.Secp384r1];

    /// <summary>The client's certificate and signer, sent when the server asks for one.</summary>
    public ClientCredential? ClientCredential { get; init; }

    /// <summary>Chooses (or fetches) a credential for a specific CertificateRequest; overrides <see cref="ClientCredential"/>.</summary>
    public Func<CertificateRequestInfo, CancellationToken, ValueTask<ClientCredential?>>? ClientCredentialSelector { get; init; }

    /// <summary>Decides whether the server chain is trusted. Required unless <see cref="InsecureSkipValidation"/>.</summary>
    public IServerCertificateValidator? CertificateValidator { get; init; }

    /// <summary>Accept any server certificate (still verifies CertificateVerify). Tests only: internal, never set by the product.</summary>
    internal bool InsecureSkipValidation { get; init; }

    /// <summary>A ticket to resume with; offered only if its SNI and suite hash fit these options (early data also needs its ALPN and suite).</summary>
    public SessionTicket? ResumptionTicket { get; init; }

    public IReadOnlyList<PskKeyExchangeMode> PskModes { get; init; } = [PskKeyExchangeMode.PskDheKe];

    /// <summary>
    /// The connection may only resume from <see cref="ResumptionTicket"/>: the caller refuses a full
    /// handshake anyway. The ClientHello then leaves out what only a full handshake uses
    /// (signature_algorithms, which RFC 8446 §9.2 requires only without pre_shared_key; every suite but
    /// the ticket's; with psk_ke alone, supported_groups and key_share), so a server that will not
    /// resume refuses it at once, usually with a missing_extension alert.
    /// </summary>
    public bool ResumeOnly { get; init; }

    /// <summary>Sent as 0-RTT data when the ticket allows it.</summary>
    public ReadOnlyMemory<byte> EarlyData { get; init; }

    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>Source of randomness (client random, key shares); injectable for test vectors.</summary>
    public Action<Span<byte>>? RandomSource { get; init; }

    public TlsCounters? Counters { get; init; }

    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The longest one read or write of the established connection may wait on the server; then it
    /// fails with <see cref="TlsError.Timeout"/> (user_canceled is sent) and the connection is broken.
    /// <see cref="Timeout.InfiniteTimeSpan"/> leaves it to the caller's token.
    /// </summary>
    public TimeSpan OperationTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Zero padding added to each protected record.</summary>
    public int RecordPadding { get; init; }

    /// <summary>Test hook (RFC 8448 replay): fixed key-share private keys per group; the engine writes everything else.</summary>
    internal IReadOnlyDictionary<NamedGroup, byte[]>? FixedKeyShares { get; init; }

    /// <summary>Test hook (RFC 8448 replay): receives each derived secret with its RFC 8446 label. Never set in production.</summary>
    internal Action<string, byte[]>? KeyLog { get; init; }
}
