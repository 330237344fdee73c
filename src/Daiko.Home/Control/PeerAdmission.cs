using System.Net;

namespace Daiko.Home.Control;

/// <summary>How many connections the control listener keeps, by kind of peer.</summary>
public sealed record PeerLimits
{
    /// <summary>Connections not (yet) authenticated as an enrolled device, in total: in their TLS handshake, or without a device certificate.</summary>
    public int MaxStrangers { get; init; } = 256;

    /// <summary>The same, per source address (an IPv6 address by its /64, which one host or customer holds whole).</summary>
    public int MaxStrangersPerAddress { get; init; } = 16;

    /// <summary>Open connections of one enrolled device.</summary>
    public int MaxPerDevice { get; init; } = 16;

    /// <summary>How long a TLS handshake may last.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long a peer without a device certificate may stay silent (an enrolled device's channel has no idle limit).</summary>
    public TimeSpan StrangerIdleTimeout { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>
/// Keeps strangers (connections in their handshake, or without a device certificate) apart from
/// enrolled devices, counted by source (an address; an IPv6 address by its /64). When strangers exceed
/// their caps the oldest stranger of the fullest source is closed, never a device's connection: a flood
/// from one source (a NAT, a load balancer, one IPv6 host) churns through its own slots while a terminal
/// behind the same address completes its handshake and moves to its device's slots. A device over its
/// cap loses its oldest connection (the newest holds the key).
/// </summary>
public sealed class PeerAdmission(PeerLimits limits)
{
    private readonly Lock _gate = new();
    private readonly LinkedList<Slot> _strangers = new();
    private readonly Dictionary<string, int> _strangersBySource = new(StringComparer.Ordinal);
    private readonly Dictionary<string, LinkedList<Slot>> _devices = new(StringComparer.Ordinal);

    /// <summary>One connection's place: closing it is what eviction does.</summary>
    public sealed class Slot(IPAddress address)
    {
        internal LinkedListNode<Slot>? Node;
        internal string? Device;
        private Action? _close;
        private bool _closed;

        /// <summary>Where the peer is: the connection's source, or the client a PROXY protocol header named.</summary>
        public IPAddress Address { get; internal set; } = address;

        /// <summary>What the caps count it by: its address, or its address's /64 for IPv6.</summary>
        internal string Source { get; set; } = Devices.EnrollmentLimiter.AddressKey(address);

        /// <summary>What closes the connection now (the socket in the handshake, then the control connection).</summary>
        public void OnClose(Action close)
        {
            bool closed;
            lock (this)
            {
                _close = close;
                closed = _closed;
            }
            if (closed) close();
        }

        internal void Close()
        {
            Action? close;
            lock (this)
            {
                _closed = true;
                close = _close;
            }
            close?.Invoke();
        }
    }

    public int Strangers
    {
        get { lock (_gate) return _strangers.Count; }
    }

    /// <summary>Admits a new connection as a stranger; closes older strangers over the caps.</summary>
    public Slot AdmitStranger(IPAddress address)
    {
        address = Unmapped(address);
        var slot = new Slot(address);
        var evicted = new List<Slot>();
        lock (_gate)
        {
            slot.Node = _strangers.AddLast(slot);
            _strangersBySource[slot.Source] = _strangersBySource.GetValueOrDefault(slot.Source) + 1;
            EvictOverCaps(slot.Source, evicted);
        }
        foreach (var old in evicted) old.Close();
        return slot;
    }

    /// <summary>
    /// A stranger turned out to be <paramref name="address"/> (the client a load balancer's PROXY protocol
    /// header names): from now on it counts there, and that address's oldest strangers over the cap close.
    /// </summary>
    public void Readdress(Slot slot, IPAddress address)
    {
        address = Unmapped(address);
        var evicted = new List<Slot>();
        lock (_gate)
        {
            if (slot.Node is null || slot.Device is not null || slot.Address.Equals(address)) return;
            Uncount(slot);
            slot.Address = address;
            slot.Source = Devices.EnrollmentLimiter.AddressKey(address);
            _strangersBySource[slot.Source] = _strangersBySource.GetValueOrDefault(slot.Source) + 1;
            EvictOverCaps(slot.Source, evicted);
        }
        foreach (var old in evicted) old.Close();
    }

    private void EvictOverCaps(string source, List<Slot> evicted)
    {
        while (_strangersBySource.GetValueOrDefault(source) > limits.MaxStrangersPerAddress && OldestStranger(source) is { } old) evicted.Add(RemoveStranger(old));
        while (_strangers.Count > limits.MaxStrangers && OldestStranger(FullestSource()) is { } old) evicted.Add(RemoveStranger(old));
    }

    private static IPAddress Unmapped(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;

    /// <summary>The connection authenticated as <paramref name="deviceId"/>: it leaves the strangers; the device's oldest connection over its cap closes.</summary>
    public void Promote(Slot slot, string deviceId)
    {
        Slot? evicted = null;
        lock (_gate)
        {
            if (slot.Node is null || slot.Device is not null) return;
            RemoveStranger(slot);
            if (!_devices.TryGetValue(deviceId, out var list)) _devices[deviceId] = list = new LinkedList<Slot>();
            slot.Device = deviceId;
            slot.Node = list.AddLast(slot);
            if (list.Count > limits.MaxPerDevice)
            {
                evicted = list.First!.Value;
                list.RemoveFirst();
                evicted.Node = null;
            }
        }
        evicted?.Close();
    }

    /// <summary>The connection ended.</summary>
    public void Release(Slot slot)
    {
        lock (_gate)
        {
            if (slot.Node is null) return;
            if (slot.Device is null)
            {
                RemoveStranger(slot);
                return;
            }
            var list = _devices[slot.Device];
            list.Remove(slot.Node);
            slot.Node = null;
            if (list.Count == 0) _devices.Remove(slot.Device);
        }
    }

    private Slot? OldestStranger(string? source)
    {
        for (var node = _strangers.First; node is not null; node = node.Next)
        {
            if (source is null || node.Value.Source == source) return node.Value;
        }
        return null;
    }

    private string? FullestSource() => _strangersBySource.Count == 0 ? null : _strangersBySource.MaxBy(p => p.Value).Key;

    private Slot RemoveStranger(Slot slot)
    {
        _strangers.Remove(slot.Node!);
        slot.Node = null;
        Uncount(slot);
        return slot;
    }

    private void Uncount(Slot slot)
    {
        var left = _strangersBySource[slot.Source] - 1;
        if (left == 0) _strangersBySource.Remove(slot.Source);
        else _strangersBySource[slot.Source] = left;
    }
}
