namespace Daiko.Money;

/// <summary>Why a money message was refused (a reason a caller acts on, never a stack trace).</summary>
public enum PurseRefusal
{
    None,
    BadSignature,
    Malformed,
    Expired,
    InsufficientBalance,
    WrongCurrency,
    OutsideCancellationWindow,
    AlreadyCancelled,
    UnknownPayment,
    CardNotReady,
    WrongCard,

    /// <summary>The stored balances or log do not match the home card's seal (edited, truncated, reordered or rolled back).</summary>
    SealBroken,

    /// <summary>The party already used this id for a different message.</summary>
    Conflict,
}

public sealed class PurseException(PurseRefusal refusal, string message) : Exception(message)
{
    public PurseRefusal Refusal { get; } = refusal;
}
