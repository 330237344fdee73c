using System.Security.Cryptography;

namespace Daiko.Tls;

/// <summary>
/// A TLS 1.3 session ticket with its PSK and the context it may be used in (SNI, ALPN, suite).
/// Serializes to CBOR so the home server can hand it to a terminal. ToString never prints secrets.
/// </summary>
public sealed class SessionTicket
{
    public SessionTicket(byte[] identity, byte[] psk, CipherSuite suite, string? serverName, string? alpn,
        uint lifetimeSeconds, uint ageAdd, uint maxEarlyData, DateTimeOffset receivedAt, byte[] nonce)
    {
        Identity = identity;
        Psk = psk;
        Suite = suite;
        ServerName = serverName;
        Alpn = alpn;
        LifetimeSeconds = lifetimeSeconds;
        AgeAdd = ageAdd;
        MaxEarlyData = maxEarlyData;
        ReceivedAt = receivedAt;
        Nonce = nonce;
    }

    public byte[] Identity { get; }

    public byte[] Psk { get; }

    public CipherSuite Suite { get; }

    public string? ServerName { get; }

    public string? Alpn { get; }

    public uint LifetimeSeconds { get; }

    public uint AgeAdd { get; }

    public uint MaxEarlyData { get; }

    public DateTimeOffset ReceivedAt { get; }

    public byte[] Nonce { get; }

    /// <summary>
    /// TLS 1.3 (a PSK ticket) or TLS 1.2 (an RFC 5077 ticket, whose <see cref="Psk"/> is the session's
    /// 48-byte master secret and whose <see cref="Suite"/> is a TLS 1.2 suite).
    /// </summary>
    public TlsVersions Version { get; init; } = TlsVersions.Tls13;

    /// <summary>
    /// What whoever handed this ticket over knew of the market when it did: a resumption there with
    /// psk_ke alone (no key share, no public-key operation) succeeded. A hint for choosing the key
    /// exchange, not a promise: the market may have changed its mind since. The engine ignores it.
    /// </summary>
    public bool MarketAcceptsPskKe { get; set; }

    public DateTimeOffset ExpiresAt => ReceivedAt.AddSeconds(Math.Min(LifetimeSeconds, 7 * 24 * 3600));

    public bool IsExpired(DateTimeOffset now) => now >= ExpiresAt;

    /// <summary>Whether this ticket may be offered for a connection to <paramref name="serverName"/> with these suites.</summary>
    public bool Fits(string? serverName, IReadOnlyList<CipherSuite> suites) =>
        string.Equals(ServerName, serverName, StringComparison.OrdinalIgnoreCase)
        && (Version == TlsVersions.Tls12 ? suites.Contains(Suite) : suites.Any(s => KeySchedule.CipherSuiteInfo.Find(s)?.Hash == KeySchedule.CipherSuiteInfo.Find(Suite)?.Hash));

    /// <summary>Early data must run under the ALPN the ticket was issued for (RFC 8446 §4.2.10).</summary>
    public bool AllowsEarlyDataWith(IReadOnlyList<string> alpn, IReadOnlyList<CipherSuite> suites) =>
        MaxEarlyData > 0 && suites.Contains(Suite) && (Alpn is null ? alpn.Count == 0 : alpn.Count > 0 && alpn[0] == Alpn);

    /// <summary>Wipes the PSK (after use or when discarded).</summary>
    public void Wipe() => CryptographicOperations.ZeroMemory(Psk);

    public override string ToString() => $"SessionTicket({(Version == TlsVersions.Tls12 ? "TLS 1.2, " : "")}{Suite}, sni={ServerName}, alpn={Alpn}, lifetime={LifetimeSeconds}s, max_early_data={MaxEarlyData})";
}
