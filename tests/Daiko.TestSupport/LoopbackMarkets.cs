namespace Daiko.TestSupport;

/// <summary>
/// Test markets listen on loopback, which a home server refuses for every device unless its owner allows
/// it: the tests allow it per device, as a user would, with <c>home device add|policy --markets 127.0.0.1</c>
/// (a name such as <c>localhost</c> is allowed through the address it resolves to).
/// </summary>
public static class LoopbackMarkets
{
    /// <summary>The market list that allows the test markets (and any public host).</summary>
    public const string Markets = "*,127.0.0.1";

    /// <summary>
    /// Tests fetch from one market many times within a ticket's lifetime; each ticket handed over counts
    /// against the device's limit until it expires, so the test devices may hold many.
    /// </summary>
    public const int MaxTickets = 1000;

    /// <summary>The options for <c>daiko home device add</c> or <c>daiko home device policy</c>.</summary>
    public static readonly string[] PolicyOptions = ["--markets", Markets, "--max-tickets", "1000"];

    /// <summary><c>daiko home device add --home HOME --name NAME</c> with the loopback markets allowed.</summary>
    public static string[] DeviceAdd(string home, string name) => ["home", "device", "add", "--home", home, "--name", name, .. PolicyOptions];
}
