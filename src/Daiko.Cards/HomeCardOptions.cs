namespace Daiko.Cards;

/// <summary>
/// Where the home card lives. Without <see cref="ModulePath"/>, the card is a SoftHSM2 token store
/// inside <see cref="Directory"/>/card (the embedded default).
/// </summary>
public sealed record HomeCardOptions(string Directory)
{
    public string? ModulePath { get; init; }

    public string TokenLabel { get; init; } = "daiko-home";

    public TimeProvider Time { get; init; } = TimeProvider.System;

    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Where the PIN counters and card state persist; default a file beside the local token
    /// (<see cref="Directory"/>/card/state.json). A hosted deployment with a network HSM passes its own.
    /// </summary>
    public Pins.ICardCounterStore? CounterStore { get; init; }

    public const int MaxTries = Pins.CountedPinCheck.MaxTries;

    internal string CardDirectory => Path.Combine(Directory, "card");

    internal bool EmbeddedSoftHsm => ModulePath is null;

    internal string EffectiveModulePath => ModulePath ?? Tokens.Pkcs11Module.DefaultSoftHsmPath;

    internal string? SoftHsmConf => EmbeddedSoftHsm ? Path.Combine(CardDirectory, "softhsm2.conf") : null;

    internal string Pin1TokenLabel => TokenLabel + "-pin1";
}
