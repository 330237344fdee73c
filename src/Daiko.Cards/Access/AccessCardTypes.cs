using System.Text.Json.Serialization;
using Daiko.Cards.Pins;

namespace Daiko.Cards;

public enum AccessCardState
{
    Locked,
    Accessible,

    /// <summary>Three wrong PINs destroyed the key: the terminal must enroll again.</summary>
    Destroyed,
}

public enum AccessCardOutcome
{
    Accepted,
    Wrong,

    /// <summary>The key is gone (three wrong PINs): enroll again.</summary>
    Destroyed,
}

/// <summary>The outcome of unlocking the access card, with a sentence a user can act on (never the PIN).</summary>
public sealed record AccessCardUnlock(AccessCardOutcome Outcome, int TriesLeft, AccessCardState State, string Message)
{
    public bool Accepted => Outcome == AccessCardOutcome.Accepted;

    internal static AccessCardUnlock Destroyed(string message) => new(AccessCardOutcome.Destroyed, 0, AccessCardState.Destroyed, message);
}

/// <summary>
/// A platform biometric hook (fingerprint, face): on success it releases the secret that unlocks the
/// access card, as a platform keystore would.
/// </summary>
public interface IBiometricUnlock
{
    /// <summary>Returns the unlock secret after a successful biometric check, or null.</summary>
    string? Release();
}

/// <summary>
/// A PKCS#11 token that holds the device key instead of a file: the token must exist already, its user
/// PIN being the access-card PIN (as a smart card comes). <paramref name="SoftHsmConf"/> selects a
/// SoftHSM2 token store; null uses the environment's SOFTHSM2_CONF.
/// </summary>
public sealed record AccessCardToken(string ModulePath, string TokenLabel, string? SoftHsmConf = null);

/// <summary>access-card.json: the wrong-PIN count (files written before the rename kept it as "pin1_failures").</summary>
internal sealed record PersistedAccessCardState
{
    [JsonPropertyName("failures")] public int Failures { get; init; }

    [JsonPropertyName("pin1_failures")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? LegacyFailures { get; init; }

    [JsonPropertyName("destroyed")] public bool Exhausted { get; init; }

    public int Count => Math.Max(Failures, LegacyFailures ?? 0);

    public static CounterFile<PersistedAccessCardState> File(string directory) =>
        new(Path.Combine(directory, "access-card.json"), () => new PersistedAccessCardState { Failures = CountedPinCheck.MaxTries, Exhausted = true });

    public static readonly PinCounter<PersistedAccessCardState> Pin = new(
        p => p.Count, (p, n) => p with { Failures = n, LegacyFailures = null }, p => p.Exhausted, p => p with { Exhausted = true });
}
