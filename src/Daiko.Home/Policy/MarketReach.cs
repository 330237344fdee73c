using System.Net;
using System.Net.Sockets;

namespace Daiko.Home.Policy;

/// <summary>
/// Which markets the home server may connect to for a device: the device's market list, and whether the
/// home server lets private addresses through for every device (<c>home serve --allow-private-markets</c>).
/// The name is resolved once, each address is judged, and only an address judged here is dialled, so a
/// name that answers differently the second time (DNS rebinding) gains nothing.
/// </summary>
public sealed record MarketReach(IReadOnlyList<MarketPattern> Markets, bool AllowPrivateEverywhere = false)
{
    /// <summary>Where names are looked up (answers kept a few seconds; each use is judged here afresh).</summary>
    public HostLookup Lookup { get; init; } = HostLookup.System;

    /// <summary>Any public market (the default of every device).</summary>
    public static readonly MarketReach AnyPublic = new([MarketPattern.AnyPublic]);

    /// <summary>
    /// Refuses a market the list cannot allow by its names alone (before any name lookup): the host
    /// dialled and, when the device asks for another, the server name the handshake presents and the
    /// market's certificate is checked for, since the owner acts at the market that name names.
    /// </summary>
    public void CheckName(string host, int port, string? serverName = null)
    {
        CheckOneName(host, port);
        if (serverName is not null) CheckOneName(serverName, port);
    }

    private void CheckOneName(string host, int port)
    {
        if (NameListed(host, port) || Markets.Any(m => m.CanCoverAddresses)) return;
        throw NotListed(host, port);
    }

    private bool NameListed(string host, int port) => Markets.Any(m => m.MatchesName(host, port));

    private PolicyRefusedException NotListed(string host, int port) => new(PolicyRule.Markets,
        $"this device may not use the market {host}:{port} (its markets: {(Markets.Count == 0 ? "none" : string.Join(",", Markets))})", new PolicyRemedy("allow it", "--markets"));

    /// <summary>
    /// The addresses of <paramref name="host"/> this device may reach, in dialling order; refuses when
    /// there is none. With a <paramref name="serverName"/> other than the host, each address must be
    /// allowed under both names: a device allowed shop.example may not present bank.example at it.
    /// </summary>
    public async Task<IReadOnlyList<IPAddress>> ResolveAsync(string host, int port, string? serverName, CancellationToken cancellationToken)
    {
        CheckName(host, port, serverName);
        var listed = NameListed(host, port);
        var serverListed = serverName is null || NameListed(serverName, port);
        IPAddress[] addresses;
        try
        {
            addresses = await Lookup.AddressesAsync(host, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException) when (!listed)
        {
            // A name only an address entry could have allowed: it is not listed, whether it exists or not.
            throw NotListed(host, port);
        }
        var reachable = addresses.Where(a => Allows(host, port, a, listed)).ToList();
        if (addresses.Length == 0) throw new SocketException((int)SocketError.HostNotFound);
        if (reachable.Count == 0) throw addresses.Any(PrivateAddresses.IsPrivate) ? PrivateRefusal(host) : NotListed(host, port);
        var allowed = reachable.Where(a => serverName is null || Allows(serverName, port, a, serverListed))
            .OrderBy(a => a.AddressFamily == AddressFamily.InterNetwork ? 0 : 1).ToList();
        if (allowed.Count > 0) return allowed;
        throw reachable.Any(PrivateAddresses.IsPrivate) ? PrivateRefusal($"{serverName} (at {host})") : NotListed(serverName!, port);
    }

    /// <summary>
    /// For assist, where the terminal dials the market itself and the card's signature vouches for the server name: every
    /// address the server name itself leads to (a literal, or what it resolves to here) must be one this device may reach,
    /// so that naming a home-network service at a public host address does not bring it the owner's signature. A name
    /// that does not resolve here is judged at the host's addresses alone (<see cref="ResolveAsync"/>): the home server
    /// cannot see where it leads.
    /// </summary>
    public async Task CheckOwnAddressesAsync(string serverName, int port, CancellationToken cancellationToken)
    {
        IPAddress[] addresses;
        if (IPAddress.TryParse(serverName, out var literal)) addresses = [literal];
        else
        {
            try
            {
                addresses = await Lookup.AddressesAsync(serverName, cancellationToken).ConfigureAwait(false);
            }
            catch (SocketException)
            {
                return;
            }
        }
        var listed = NameListed(serverName, port);
        var refused = addresses.Where(a => !Allows(serverName, port, a, listed)).ToList();
        if (refused.Count == 0) return;
        throw refused.Any(PrivateAddresses.IsPrivate) ? PrivateRefusal(serverName) : NotListed(serverName, port);
    }

    /// <summary>The one refusal for a market on a private address.</summary>
    public static PolicyRefusedException PrivateRefusal(string host) =>
        new(PolicyRule.PrivateAddress, $"{host} resolves to a private address; the owner can allow it for this device");

    private bool Allows(string host, int port, IPAddress address, bool listed)
    {
        if (PrivateAddresses.IsPrivate(address))
        {
            return Markets.Any(m => m.NamesPrivate(host, port, address)) || (AllowPrivateEverywhere && listed);
        }
        return listed || Markets.Any(m => m.CoversAddress(port, address));
    }

    /// <summary>Resolves, judges and connects to the first allowed address that answers.</summary>
    public async Task<Stream> OpenAsync(string host, int port, string? serverName, CancellationToken cancellationToken)
    {
        var addresses = await ResolveAsync(host, port, serverName, cancellationToken).ConfigureAwait(false);
        SocketException? last = null;
        foreach (var address in addresses)
        {
            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(address, port, cancellationToken).ConfigureAwait(false);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch (SocketException e)
            {
                socket.Dispose();
                last = e;
            }
            catch (OperationCanceledException)
            {
                socket.Dispose();
                throw;
            }
        }
        throw last!;
    }
}
