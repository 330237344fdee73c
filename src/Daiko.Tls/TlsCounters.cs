namespace Daiko.Tls;

/// <summary>
/// Honest cost counters for one or more connections (thread-safe). Public-key operations count each
/// key-share generation, each key agreement, each signature verification (CertificateVerify and every
/// signature checked while validating the server's chain) and each signature the client's signer made
/// (the signer's owner reports those through <see cref="AddPublicKeyOperations"/>).
/// </summary>
public sealed class TlsCounters
{
    private long _bytesSent;
    private long _bytesReceived;
    private long _roundTrips;
    private long _publicKeyOperations;

    public long BytesSent => Interlocked.Read(ref _bytesSent);

    public long BytesReceived => Interlocked.Read(ref _bytesReceived);

    /// <summary>Times the client sent a flight and then had to wait for the server.</summary>
    public long RoundTrips => Interlocked.Read(ref _roundTrips);

    public long PublicKeyOperations => Interlocked.Read(ref _publicKeyOperations);

    public void AddBytesSent(long n) => Interlocked.Add(ref _bytesSent, n);

    public void AddBytesReceived(long n) => Interlocked.Add(ref _bytesReceived, n);

    public void AddRoundTrip() => Interlocked.Increment(ref _roundTrips);

    public void AddPublicKeyOperations(int n) => Interlocked.Add(ref _publicKeyOperations, n);

    /// <summary>Adds everything <paramref name="other"/> counted (a cost charged to a caller).</summary>
    public void Add(TlsCounters other)
    {
        AddBytesSent(other.BytesSent);
        AddBytesReceived(other.BytesReceived);
        Interlocked.Add(ref _roundTrips, other.RoundTrips);
        Interlocked.Add(ref _publicKeyOperations, other.PublicKeyOperations);
    }
}
