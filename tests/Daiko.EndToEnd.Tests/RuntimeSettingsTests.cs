using System.Text.Json;

namespace Daiko.EndToEnd.Tests;

/// <summary>
/// What the runtime starts every <c>daiko</c> process with (its runtimeconfig.json, written from the CLI's
/// project): the settings the load section of README measured, so that dropping one is a failing test, not a
/// silent change of the home server's cost.
/// </summary>
public sealed class RuntimeSettingsTests
{
    [Fact]
    public void TheDaikoProcess_StartsWithoutProfileGuidedRecompilation_AndWithTheThreadPoolsOwnSpinning()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "daiko.runtimeconfig.json");
        using var config = JsonDocument.Parse(File.ReadAllText(path));
        var properties = config.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");

        Assert.False(properties.GetProperty("System.Runtime.TieredPGO").GetBoolean());
        // Tried and taken back (README, the load section): without the idle threads' spinning the home server spent less
        // CPU a session, but a lone terminal's requests waited on each wake-up (a warm ticket handed out 15-20 % slower).
        Assert.False(properties.TryGetProperty("System.Threading.ThreadPool.UnfairSemaphoreSpinLimit", out _));
    }
}
