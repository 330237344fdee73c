using System.Security.Cryptography;
using Daiko.Tls.Crypto;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Records;

namespace Daiko.Tls.Tls12;

/// <summary>
/// What a TLS 1.2 handshake has established so far, passed from state to state: the randoms and suite
/// (fixed by ServerHello), the ECDHE key and pre-master secret (until the master secret exists), the
/// master secret and the client's write keys (until its change_cipher_spec). Wiped when disposed.
/// </summary>
internal sealed class Handshake12(byte[] clientRandom, byte[] serverRandom, CipherSuiteInfo suite, bool ticketPromised) : IDisposable
{
    public byte[] ClientRandom { get; } = clientRandom;

    public byte[] ServerRandom { get; } = serverRandom;

    public CipherSuiteInfo Suite { get; } = suite;

    /// <summary>The server sent session_ticket in its ServerHello: a NewSessionTicket comes before its Finished.</summary>
    public bool TicketPromised { get; } = ticketPromised;

    public bool Resumed { get; init; }

    public KeyShare? Share { get; set; }

    public byte[]? PreMasterSecret { get; set; }

    public MasterSecret12? Master { get; set; }

    /// <summary>The client's write protection, taken into use when it sends change_cipher_spec.</summary>
    public RecordProtection? ClientWriter { get; set; }

    public NewSessionTicket12? NewTicket { get; set; }

    /// <summary>Derives the record keys of both directions; the server's wait for its change_cipher_spec.</summary>
    public void DeriveKeys(RecordLayer records)
    {
        using var keys = Master!.KeyBlock(ClientRandom, ServerRandom);
        ClientWriter = keys.ClientWriter(Suite);
        records.PendingReadProtection = keys.ServerReader(Suite);
    }

    /// <summary>Sends change_cipher_spec, then switches to the client's write keys.</summary>
    public async ValueTask ChangeWriteKeysAsync(RecordLayer records, CancellationToken cancellationToken)
    {
        await records.WriteAsync(ContentType.ChangeCipherSpec, SimpleMessages12.ChangeCipherSpec, cancellationToken, flush: false);
        records.SetWriteProtection(ClientWriter!);
        ClientWriter = null;
    }

    public void Dispose()
    {
        Share?.Dispose();
        if (PreMasterSecret is not null) CryptographicOperations.ZeroMemory(PreMasterSecret);
        Master?.Dispose();
        ClientWriter?.Dispose();
    }
}
