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
    public void TheDaikoProcess_StartsWithoutProfileGuidedRecompilation_AndWithoutThreadPoolSpinning()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "daiko.runtimeconfig.json");
        using var config = JsonDocument.Parse(File.ReadAllText(path));
        var properties = config.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");

        Assert.False(properties.GetProperty("System.Runtime.TieredPGO").GetBoolean());
        // A number in the file; the runtime reads it as AppContext data of the same name.
        Assert.Equal(0, properties.GetProperty("System.Threading.ThreadPool.UnfairSemaphoreSpinLimit").GetInt32());
    }
}
