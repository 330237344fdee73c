using System.Text.Json.Serialization;

namespace Daiko.Cards.Pins;

/// <summary>The persisted part of the home card: failure counters, disabled flag, last known state.</summary>
internal sealed record PersistedCardState
{
    [JsonPropertyName("pin1_failures")] public int Pin1Failures { get; init; }

    [JsonPropertyName("pin2_failures")] public int Pin2Failures { get; init; }

    [JsonPropertyName("disabled")] public bool Disabled { get; init; }

    [JsonPropertyName("state")] public HomeCardState State { get; init; } = HomeCardState.Locked;

    [JsonPropertyName("idle_expires_at")] public DateTimeOffset? IdleExpiresAt { get; init; }

    /// <summary>How often the admin code set new PINs (a running home server locks when this moves).</summary>
    [JsonPropertyName("unblocks")] public int Unblocks { get; init; }

    public static CounterFile<PersistedCardState> File(HomeCardOptions options) =>
        new(options.CounterStore ?? new LocalCounterStore(Path.Combine(options.CardDirectory, "state.json")), () => new PersistedCardState { Disabled = true, State = HomeCardState.Disabled, Pin1Failures = 3, Pin2Failures = 3 });

    public static readonly PinCounter<PersistedCardState> Pin1 = new(p => p.Pin1Failures, (p, n) => p with { Pin1Failures = n }, p => p.Disabled, Disable);

    public static readonly PinCounter<PersistedCardState> Pin2 = new(p => p.Pin2Failures, (p, n) => p with { Pin2Failures = n }, p => p.Disabled, Disable);

    private static PersistedCardState Disable(PersistedCardState p) => p with { Disabled = true, State = HomeCardState.Disabled };
}
