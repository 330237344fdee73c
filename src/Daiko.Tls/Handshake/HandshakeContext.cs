using System.Security.Cryptography;
using Daiko.Tls.Crypto;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Messages;
using Daiko.Tls.Records;

namespace Daiko.Tls.Handshake;

/// <summary>Everything the handshake states share: options, record layer, transcript and what was negotiated.</summary>
internal sealed class HandshakeContext : IDisposable
{
    public HandshakeContext(TlsClientOptions options, RecordLayer records)
    {
        Options = options;
        Records = records;
    }

    public TlsClientOptions Options { get; }

    public RecordLayer Records { get; }

    public Transcript Transcript { get; } = new();

    public Dictionary<NamedGroup, KeyShare> KeyShares { get; } = new();

    public SessionTicket? OfferedTicket { get; set; }

    /// <summary>The client random of this handshake (both ClientHellos share it).</summary>
    public byte[] ClientRandom { get; set; } = [];

    /// <summary>legacy_session_id: empty, or random when a TLS 1.2 ticket is offered (RFC 5077 §3.4).</summary>
    public byte[] SessionId { get; set; } = [];

    public SessionTicket? OfferedTls12Ticket { get; set; }

    /// <summary>The TLS 1.2 handshake's secrets once the server chose TLS 1.2.</summary>
    public Tls12.Handshake12? Tls12 { get; set; }

    public bool OfferedEarlyData { get; set; }

    public bool RetriedHello { get; set; }

    /// <summary>The TLS 1.3 cipher suites the last ClientHello carried: the server may choose only one of these.</summary>
    public IReadOnlyList<CipherSuite> OfferedCipherSuites { get; set; } = [];

    /// <summary>Whether the ClientHello offered TLS 1.2 (the options allow it, and the hello is not resume-only with a TLS 1.3 ticket).</summary>
    public bool OffersTls12 { get; set; }

    /// <summary>Extension types the last ClientHello carried.</summary>
    public HashSet<ushort> OfferedExtensions { get; set; } = [];

    /// <summary>The group a HelloRetryRequest asked for: the ServerHello's key share must be for it.</summary>
    public NamedGroup? RetryGroup { get; set; }

    public CipherSuiteInfo? Suite { get; set; }

    public NamedGroup? Group { get; set; }

    public PskKeyExchangeMode? KeyExchange { get; set; }

    public EarlySecret? Early { get; set; }

    public HandshakeSecret? HandshakeSecret { get; set; }

    public byte[]? ClientHandshakeSecret { get; set; }

    public byte[]? ServerHandshakeSecret { get; set; }

    public RecordProtection? EarlyWriter { get; set; }

    public string? Alpn { get; set; }

    public bool EarlyDataAccepted { get; set; }

    public CertificateRequest? CertificateRequest { get; set; }

    public IReadOnlyList<byte[]> ServerChain { get; set; } = [];

    public byte[] Random(int length)
    {
        var bytes = new byte[length];
        if (Options.RandomSource is { } source) source(bytes);
        else RandomNumberGenerator.Fill(bytes);
        return bytes;
    }

    public void AddPublicKeyOperation() => Options.Counters?.AddPublicKeyOperations(1);

    private readonly TlsWriter _flight = new(1024);

    /// <summary>
    /// Adds a message to the transcript and to the current flight. Messages of one flight under one key
    /// go out coalesced in as few records as possible; <paramref name="flush"/> sends the flight.
    /// </summary>
    public async ValueTask SendHandshakeAsync(byte[] message, CancellationToken cancellationToken, bool flush = true)
    {
        Transcript.Add(message);
        _flight.WriteBytes(message);
        if (flush) await FlushFlightAsync(cancellationToken);
    }

    /// <summary>
    /// Seals the flight's messages into records; <paramref name="flush"/> false leaves them in the
    /// record layer's output buffer for the next write that flushes (TLS 1.2: the change_cipher_spec
    /// and Finished that follow; a record that would not fit beside them writes them first).
    /// </summary>
    public async ValueTask FlushFlightAsync(CancellationToken cancellationToken, bool flush = true)
    {
        if (_flight.Length == 0) return;
        var bytes = _flight.ToArray();
        _flight.Reset();
        if (PeerClosedWrites) return;
        try
        {
            await Records.WriteAsync(ContentType.Handshake, bytes, cancellationToken, flush);
        }
        catch (Exception e) when (AfterServerFinished && e is IOException or System.Net.Sockets.SocketException)
        {
            // The server answered (0.5-RTT data, e.g. a response to early data) and closed before our
            // Finished arrived. What it sent is authenticated by its Finished and stays readable.
            PeerClosedWrites = true;
        }
    }

    /// <summary>Set once the server's Finished verified: from then on a closed transport still leaves data to read.</summary>
    public bool AfterServerFinished { get; set; }

    /// <summary>The server closed the connection while the client was sending its last flight.</summary>
    public bool PeerClosedWrites { get; private set; }

    public void Dispose()
    {
        foreach (var share in KeyShares.Values) share.Dispose();
        Tls12?.Dispose();
        Early?.Dispose();
        HandshakeSecret?.Dispose();
        if (ClientHandshakeSecret is not null) CryptographicOperations.ZeroMemory(ClientHandshakeSecret);
        if (ServerHandshakeSecret is not null) CryptographicOperations.ZeroMemory(ServerHandshakeSecret);
    }
}
