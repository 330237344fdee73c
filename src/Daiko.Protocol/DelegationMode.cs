namespace Daiko.Protocol;

/// <summary>How the home server acts for a terminal towards a market (F3-F7).</summary>
public enum DelegationMode
{
    /// <summary>The home server picks the cheapest mode the market supports, from what it learned about it.</summary>
    Auto,

    /// <summary>The home server hands over a resumption ticket and its PSK; the terminal resumes directly.</summary>
    Resume,

    /// <summary>The home server hands over live traffic secrets and splices ciphertext.</summary>
    Handoff,

    /// <summary>The home server terminates both sides; the terminal speaks only the control channel.</summary>
    Relay,

    /// <summary>The terminal runs the handshake; the home card signs and the home server validates the chain.</summary>
    Assist,
}

/// <summary>The home card's state as the control protocol names it.</summary>
public enum CardState
{
    Locked,
    RemoteAccessWait,
    CryptoReady,
    Disabled,
}

/// <summary>Wire names of the protocol's small enums.</summary>
public static class WireNames
{
    public static string ToWire(this DelegationMode mode) => mode.ToString().ToLowerInvariant();

    public static string ToWire(this CardState state) => state switch
    {
        CardState.Locked => "locked",
        CardState.RemoteAccessWait => "remote-access-wait",
        CardState.CryptoReady => "crypto-ready",
        _ => "disabled",
    };

    internal static readonly IReadOnlyDictionary<string, DelegationMode> Modes =
        Enum.GetValues<DelegationMode>().ToDictionary(m => m.ToWire(), StringComparer.Ordinal);

    internal static readonly IReadOnlyDictionary<string, CardState> States =
        Enum.GetValues<CardState>().ToDictionary(s => s.ToWire(), StringComparer.Ordinal);
}
