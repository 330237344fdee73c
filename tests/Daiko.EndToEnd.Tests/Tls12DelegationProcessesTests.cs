using System.Text.Json;
using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests;

/// <summary>
/// Delegation to markets that speak only TLS 1.2 (OpenSSL, GnuTLS, nginx), through the daiko CLI as
/// separate processes: each market sees the owner's certificate, and resume costs the terminal no
/// public-key operation (a TLS 1.2 abbreviated handshake from the ticket the home server handed over).
/// </summary>
public sealed class Tls12DelegationProcessesTests(HomeAndTerminal system) : IClassFixture<HomeAndTerminal>
{
    public static TheoryData<string, string> MarketsAndModes()
    {
        var data = new TheoryData<string, string>();
        foreach (var market in new[] { "nginx", "openssl", "gnutls" })
        foreach (var mode in new[] { "resume", "handoff", "relay", "assist", "auto" })
        {
            data.Add(market, mode);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(MarketsAndModes))]
    public async Task EveryMode_OnATls12OnlyMarket_TheMarketSeesTheUsersCertificate(string market, string mode)
    {
        using var peer = await PeerFactory.StartAsync(market, system.Pki, system.Dir.Path, new TlsPeerOptions { Versions = "1.2" });

        var result = await DaikoCli.RunAsync(["terminal", "get", $"https://localhost:{peer.Port}{peer.IdentityPath}", "--terminal", system.Terminal, "--mode", mode, "--stats"]);

        Assert.True(result.ExitCode == 0, result.ToString() + peer.Log);
        Assert.Contains("Alice Example", result.StandardOutput, StringComparison.Ordinal);
        var stats = JsonDocument.Parse(result.StandardError.Trim().Split('\n')[^1]).RootElement;
        if (mode == "resume")
        {
            Assert.True(stats.GetProperty("resumed").GetBoolean());
            Assert.Equal(0, stats.GetProperty("public_key_ops").GetInt64());
        }
        if (mode is "resume" or "handoff") Assert.Equal("1.2", stats.GetProperty("version").GetString());
        if (mode is "handoff" or "relay") Assert.Equal(0, stats.GetProperty("public_key_ops").GetInt64());
    }
}
