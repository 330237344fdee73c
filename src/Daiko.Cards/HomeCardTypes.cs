namespace Daiko.Cards;

/// <summary>The home card's states (seed Fig. 6).</summary>
public enum HomeCardState
{
    /// <summary>Nothing works until PIN1 is given.</summary>
    Locked,

    /// <summary>PIN1 was given: a terminal may connect and give PIN2.</summary>
    RemoteAccessWait,

    /// <summary>PIN2 was given over a control channel: signing and e-money work.</summary>
    CryptoReady,

    /// <summary>Three wrong PINs in a row: only the admin code can unblock.</summary>
    Disabled,
}

public enum HomeCardKeyType
{
    P256,
    P384,
    Rsa3072,
}

public enum PinOutcome
{
    Accepted,
    Wrong,
    Disabled,
    WrongState,
}

/// <summary>The outcome of a PIN entry, with a sentence a user can act on (never the PIN).</summary>
public sealed record PinResult(PinOutcome Outcome, int TriesLeft, HomeCardState State, string Message)
{
    public bool Accepted => Outcome == PinOutcome.Accepted;
}

/// <summary>What <c>daiko home card status</c> reports.</summary>
public sealed record HomeCardStatus(
    HomeCardState State,
    int Pin1TriesLeft,
    int Pin2TriesLeft,
    HomeCardKeyType KeyType,
    bool HasCertificate,
    string CardId,
    DateTimeOffset? IdleExpiresAt,
    string TokenLabel);

/// <summary>The card cannot do this in its current state (a clear sentence, no secret).</summary>
public class CardNotReadyException(string message) : InvalidOperationException(message);

public sealed class CardDisabledException(string message) : CardNotReadyException(message);

/// <summary>A wrong PIN for an owner operation; the try was counted.</summary>
public sealed class WrongPinException(string message, int triesLeft) : InvalidOperationException(message)
{
    public int TriesLeft { get; } = triesLeft;
}
