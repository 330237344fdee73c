namespace Daiko.Home.Delegation;

/// <summary>
/// What a cached secret is bound to: the device it was obtained for, and the market endpoint with the
/// SNI and ALPN the session was negotiated under (a ticket is never used under other ones).
/// </summary>
public readonly record struct MarketKey(string DeviceId, string Host, int Port, string ServerName, string? Alpn)
{
    public override string ToString() => $"{DeviceId}→{ServerName}@{Host}:{Port}{(Alpn is null ? "" : "/" + Alpn)}";
}
