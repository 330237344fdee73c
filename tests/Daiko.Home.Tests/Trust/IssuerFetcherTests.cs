using System.Text;
using Daiko.Home.Trust;
using Daiko.Tls;
using Daiko.TestSupport.Hostile;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Daiko.Home.Tests.Trust;

/// <summary>
/// A market chain without its intermediate, whose leaf names the intermediate's http URL (served by a
/// real HTTP listener on loopback): nothing is fetched unless the owner opted in, and then only from an
/// allowed address, within 2 s and 64 KiB, once per URL.
/// </summary>
public sealed class IssuerFetcherTests : IDisposable
{
    private readonly AiaChain _chain = new();

    private CertificateHttpServer Server => _chain.Server;

    private async Task<CertificateVerdict> ValidateAsync(IIssuerFetcher? issuers) =>
        await new X509ChainValidator([_chain.Root], issuers: issuers).ValidateAsync("market.example", [_chain.Leaf], CancellationToken.None);

    [Fact]
    public async Task WithoutTheOption_AChainMissingItsIntermediate_FailsAndNothingIsFetched()
    {
        Assert.Equal(CertificateProblem.UntrustedRoot, (await ValidateAsync(null)).Problem);
        Assert.Equal(0, Server.Requests);
    }

    [Fact]
    public async Task WithTheOption_TheMissingIntermediateIsFetchedOnce_OverHttpOnly_AndTheChainValidates()
    {
        using var fetcher = new IssuerFetcher(NullLogger.Instance, allowPrivate: true);

        Assert.True((await ValidateAsync(fetcher)).Trusted);
        Assert.True((await ValidateAsync(fetcher)).Trusted);

        Assert.Equal(["/intermediate.cer"], Server.Paths);
    }

    [Fact]
    public async Task AnIssuerOnAPrivateAddress_IsNotFetched()
    {
        using var fetcher = new IssuerFetcher(NullLogger.Instance);

        Assert.Equal(CertificateProblem.UntrustedRoot, (await ValidateAsync(fetcher)).Problem);
        Assert.Equal(0, Server.Requests);
    }

    [Fact]
    public async Task AnAnswerOver64KiB_IsNotUsed()
    {
        using var fetcher = new IssuerFetcher(NullLogger.Instance, allowPrivate: true);
        // A PEM certificate that would be read if the whole answer were: the cap, not the parser, refuses it.
        Server.Body = Encoding.ASCII.GetBytes(_chain.Intermediate.ExportCertificatePem() + "\n" + new string(' ', IssuerFetcher.MaxBytes));

        Assert.Equal(CertificateProblem.UntrustedRoot, (await ValidateAsync(fetcher)).Problem);
        Assert.Equal(1, Server.Requests);
    }

    [Fact]
    public async Task ASlowAnswer_IsGivenUpAfterTwoSeconds()
    {
        using var fetcher = new IssuerFetcher(NullLogger.Instance, allowPrivate: true);
        Server.Delay = TimeSpan.FromSeconds(10);
        var clock = System.Diagnostics.Stopwatch.StartNew();

        Assert.Equal(CertificateProblem.UntrustedRoot, (await ValidateAsync(fetcher)).Problem);

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(6), $"the validation waited {clock.Elapsed.TotalSeconds:0.0} s");
        Assert.Equal(1, Server.Requests);
    }

    public void Dispose() => _chain.Dispose();
}
