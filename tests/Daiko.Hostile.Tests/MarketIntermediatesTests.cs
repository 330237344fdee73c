using Daiko.Hostile.Tests.Peers;
using Daiko.Protocol.Messages;
using Daiko.TestSupport.Hostile;
using Daiko.Tls;

namespace Daiko.Hostile.Tests;

/// <summary><c>daiko home serve --fetch-missing-intermediates</c> (with <c>--allow-private-markets</c>, so that a loopback issuer URL may be fetched in a test).</summary>
public sealed class FetchingHomeServe : HomeServeProcess
{
    protected override string[] ServeOptions => ["--fetch-missing-intermediates", "--allow-private-markets"];
}

[CollectionDefinition("fetching home", DisableParallelization = true)]
public sealed class FetchingHomeCollection : ICollectionFixture<FetchingHomeServe>;

/// <summary>
/// A market chain that leaves its intermediate out, checked by a real home server for an enrolled,
/// unlocked device (<c>verify-chain</c>): by default the intermediate's AIA URL is never fetched and the
/// chain fails; with the option it is fetched once, over http, and the chain is trusted.
/// </summary>
public static class MarketIntermediates
{
    /// <summary>Trusts the chain's root in the home, enrolls and unlocks a device from <paramref name="from"/>, and asks it to verify the leaf alone.</summary>
    public static async Task<VerdictReply> VerifyLeafAloneAsync(HomeServeProcess home, AiaChain chain, string name, string from)
    {
        var rootPem = Path.Combine(home.Dir.Path, $"{name}-root.pem");
        await File.WriteAllTextAsync(rootPem, chain.Root.ExportCertificatePem());
        await HomeServeProcess.Ok(["home", "trust", "add", "--home", home.Home, "--ca", rootPem]);
        var certificate = await ControlPeer.EnrollAsync(home.Port, await home.NewCodeAsync(name), from);
        await using var device = await ControlPeer.ConnectAsync(home.Port, from, certificate);
        Assert.IsType<UnlockedReply>(await device.RequestAsync(3, new UnlockRequest(HomeServeProcess.Pin1, HomeServeProcess.Pin2), TimeSpan.FromSeconds(30)));
        // The running server picks up a new trust root within a second.
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        return Assert.IsType<VerdictReply>(await device.RequestAsync(5, new VerifyChainRequest("market.example", [chain.Leaf]), TimeSpan.FromSeconds(30)));
    }
}

[Collection("fetching home")]
public sealed class MarketIntermediatesTests(FetchingHomeServe home)
{
    [Fact]
    public async Task WithTheOption_TheMissingIntermediateIsFetchedOnceOverHttp_AndTheChainIsTrusted()
    {
        using var chain = new AiaChain();

        var verdict = await MarketIntermediates.VerifyLeafAloneAsync(home, chain, "fetching-phone", "127.0.3.1");

        Assert.True(verdict.Trusted, $"{verdict.Problem}: {verdict.Reason}");
        Assert.Equal(["/intermediate.cer"], chain.Server.Paths);
        await home.Server.WaitForOutputAsync("fetched the missing intermediate", TimeSpan.FromSeconds(5));
    }
}
