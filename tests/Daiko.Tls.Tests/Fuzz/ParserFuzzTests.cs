using Daiko.TestSupport;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Messages;
using Daiko.Tls.Records;
using Daiko.Tls.Tests.Rfc8448;

namespace Daiko.Tls.Tests.Fuzz;

/// <summary>
/// Bounded fuzzing of the handshake parsers and of whole handshakes, seeded with the RFC 8448 messages.
/// A parser must accept an input or refuse it with a TlsException; a handshake must refuse every server
/// flight that differs from the honest one, and never by timing out.
/// </summary>
public sealed class ParserFuzzTests
{
    private static readonly Rfc8448Trace Trace = Rfc8448Trace.Section("3.  Simple 1-RTT Handshake");

    private static bool IsCleanRejection(Exception e) => e is TlsException;

    [Fact]
    public void HandshakeMessageParsers_RejectMalformedInputCleanly()
    {
        var seeds = new List<byte[]>
        {
            Trace.Get("{server}  construct a ServerHello", "ServerHello")[4..],
            Trace.Get("{server}  construct an EncryptedExtensions", "EncryptedExtensions")[4..],
            Trace.Get("{server}  construct a Certificate", "Certificate")[4..],
            Trace.Get("{server}  construct a CertificateVerify", "CertificateVerify")[4..],
            Trace.Get("{server}  construct a NewSessionTicket", "NewSessionTicket")[4..],
            Rfc8448Trace.Section("6.  Client Authentication").Get("{server}  construct a CertificateRequest", "CertificateRequest")[4..],
            Trace.Get("{client}  construct a ClientHello", "ClientHello")[4..],
        };
        var report = MutationFuzzer.Run(seeds, input =>
        {
            // Each parser sees every input: most are refused, some happen to parse.
            Try(() => ServerHello.Parse(input));
            Try(() => EncryptedExtensions.Parse(input));
            Try(() => CertificateMessage.Parse(input));
            Try(() => CertificateVerify.Parse(input));
            Try(() => NewSessionTicket.Parse(input));
            Try(() => Messages.CertificateRequest.Parse(input));
            Try(() => ClientHelloOffer.Parse(input));
        }, IsCleanRejection, iterations: 20_000, timeBudget: TimeSpan.FromSeconds(15));
        Assert.True(report.Iterations > 1000, $"only {report.Iterations} inputs ran");

        static void Try(Action parse)
        {
            try { parse(); }
            catch (TlsException) { }
        }
    }

    /// <summary>
    /// Runs the engine against the trace's server once per mutant. A mutant equal to what an honest
    /// server sends must be accepted; every other must be refused with a TlsException that is not a
    /// timeout (the transport never stalls, so a timeout means the engine waited for nothing).
    /// </summary>
    private static async Task<int> EveryChangedMutantIsRefusedAsync(byte[] seed, Func<byte[], ServerAlterations> alter, int randomSeed)
    {
        var inputs = new List<byte[]>();
        MutationFuzzer.Run([seed], inputs.Add, _ => false, iterations: 300, timeBudget: TimeSpan.FromSeconds(10), randomSeed: randomSeed);
        // Every truncation comes first in the corpus; keep a spread of them and all the random mutants.
        var sample = inputs.Where((input, i) => i >= seed.Length || i % 9 == 0).ToList();
        var ran = 0;
        var deadline = DateTime.UtcNow.AddSeconds(90);
        foreach (var input in sample)
        {
            if (DateTime.UtcNow > deadline) break;
            var server = new TraceServer(Trace, alter(input));
            var options = SimpleHandshakeTraceTests.EngineOptions() with { HandshakeTimeout = TimeSpan.FromSeconds(20) };
            ran++;
            if (input.AsSpan().SequenceEqual(seed))
            {
                await using var accepted = await TlsClient.ConnectAsync(server, options, CancellationToken.None);
                continue;
            }
            TlsException refused;
            try
            {
                await using var connection = await TlsClient.ConnectAsync(server, options, CancellationToken.None);
                throw new Xunit.Sdk.XunitException($"a changed server flight was accepted ({input.Length} bytes): {Convert.ToHexString(input)}");
            }
            catch (TlsException e)
            {
                refused = e;
            }
            Assert.True(refused.Error != TlsError.Timeout, $"the handshake timed out instead of refusing: {Convert.ToHexString(input)}");
        }
        return ran;
    }

    [Fact]
    public async Task Handshake_AnyChangeToTheSignedServerFlight_IsRefused_EvenUnderAFinishedComputedOverIt()
    {
        var honest = new TraceServer(Trace);
        await using (await TlsClient.ConnectAsync(honest, SimpleHandshakeTraceTests.EngineOptions(), CancellationToken.None)) { }
        // A forger holding the handshake keys sends the mutant and a Finished that matches it: only the
        // CertificateVerify check stands between the mutant and an accepted handshake.
        var ran = await EveryChangedMutantIsRefusedAsync(honest.SignedFlight, mutant => new ServerAlterations { SignedFlight = _ => mutant }, randomSeed: 1);
        Assert.True(ran >= 100, $"only {ran} handshakes ran");
    }

    [Fact]
    public async Task Handshake_AnyChangeToTheServerFinished_IsRefused()
    {
        var honest = new TraceServer(Trace);
        await using (await TlsClient.ConnectAsync(honest, SimpleHandshakeTraceTests.EngineOptions(), CancellationToken.None)) { }
        var finished = honest.TranscriptThroughServerFinished[^36..];
        var ran = await EveryChangedMutantIsRefusedAsync(finished, mutant => new ServerAlterations { WholeFlight = flight => [.. flight[..^36], .. mutant] }, randomSeed: 2);
        Assert.True(ran >= 60, $"only {ran} handshakes ran");
    }

    [Fact]
    public async Task Handshake_AnyChangeToTheServerHello_IsRefused()
    {
        var serverHello = Trace.Get("{server}  construct a ServerHello", "ServerHello");
        var ran = await EveryChangedMutantIsRefusedAsync(serverHello, mutant => new ServerAlterations { ServerHello = _ => mutant }, randomSeed: 3);
        Assert.True(ran >= 100, $"only {ran} handshakes ran");
    }
}
