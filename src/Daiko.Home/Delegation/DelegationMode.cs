namespace Daiko.Home.Delegation;

/// <summary>How the home server acts for a terminal towards a market (F3-F7).</summary>
public enum DelegationMode
{
    /// <summary>Pick the cheapest mode the market supports, from what was learned about it.</summary>
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
