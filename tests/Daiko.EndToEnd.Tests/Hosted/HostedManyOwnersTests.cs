using System.Diagnostics;
using Daiko.Home.Devices;
using Daiko.Home.Storage;
using Daiko.Host;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.Terminal;
using Daiko.TestSupport;
using Xunit.Abstractions;
using Daiko.TestSupport.Hosted;

namespace Daiko.EndToEnd.Tests.Hosted;

/// <summary>
/// The hosted deployment under load, bounded for a 2-core machine: a real PostgreSQL, three
/// <c>daiko host serve</c> processes behind HAProxy, 20 owners with 5 terminals each (simulated in this
/// process through the terminal SDK, each with its own enrolled device key and control channel),
/// delegated sessions to an openssl market and payments and refills through the balancer, and the node
/// holding one terminal's channel killed with SIGKILL midway. Afterwards every owner's ledger balances
/// against the bank's and markets' records, the site token's purse counter matches each seal, every PIN
/// counter is exact, a revocation closes the device's channel within a second and every node refuses
/// it, and no owner's schema holds anything of another owner's devices.
/// </summary>
[Collection(SecondStream.Name)]
public sealed class HostedManyOwnersTests(ITestOutputHelper output)
{
    private const int Owners = 20;
    private const int TerminalsPerOwner = 5;
    private const int Rounds = 12;
    private const long RefillAmount = 5_000;
    private static readonly TimeSpan LoadLimit = TimeSpan.FromSeconds(420);

    [Fact]
    public async Task ManyOwnersAndTerminals_ThroughThreeNodes_ANodeKilledMidway_LedgersBalance_CountersExact_OwnersIsolated()
    {
        Assert.True(HaproxyServer.Available, "haproxy is not installed (scripts/install-deps.sh installs it)");
        var clock = Stopwatch.StartNew();
        var site = new HostedSite();
        await site.InitializeAsync();
        var bank = new MoneyParty("bank.test");
        var markets = new[] { new MoneyParty("shop-a.test"), new MoneyParty("shop-b.test") };
        var hosted = HostSite.Open(site.Site);
        await using var source = hosted.OpenDataSource(maxPool: 40);
        var database = new SiteDatabase(source);
        var terminals = new List<FleetTerminal>();
        var nodes = new List<(ExternalProcess Node, int Port)>();
        try
        {
            using (var token = hosted.OpenToken())
            {
                var payees = markets.Select(m => (m, PayeeRole.Market)).Append((bank, PayeeRole.Bank)).ToList();
                for (var o = 1; o <= Owners; o++) await FleetOwners.AddAsync(site, database, token, o, payees);
            }
            output.WriteLine($"{Owners} owners provisioned at {clock.Elapsed.TotalSeconds:0.0} s");
            for (var n = 0; n < 3; n++) nodes.Add(await site.StartNodeAsync());
            using var balancer = await HaproxyServer.StartAsync(nodes.Select(n => n.Port));
            var endpoint = $"127.0.0.1:{balancer.Port}";
            byte[] spkiHash;
            using (var identity = Daiko.Home.Trust.HomeIdentity.LoadOrCreate(site.Site)) spkiHash = identity.SpkiHash;
            var work = Path.Combine(site.Dir.Path, "fleet");
            var plan = Enumerable.Range(1, Owners).SelectMany(o => Enumerable.Range(1, TerminalsPerOwner).Select(t => (Owner: o, Name: $"o{o:00}-t{t}"))).ToList();
            foreach (var chunk in plan.Chunk(10))
            {
                terminals.AddRange(await Task.WhenAll(chunk.Select(p => FleetTerminal.EnrollAsync(database, spkiHash, FleetOwners.NameOf(p.Owner), p.Name, work, endpoint))));
            }
            foreach (var chunk in terminals.Chunk(20))
            {
                await Task.WhenAll(chunk.Select(t => t.UnlockAsync(FleetOwners.PinsOf(OwnerNumber(t)).Pin1, FleetOwners.PinsOf(OwnerNumber(t)).Pin2)));
            }
            await Task.WhenAll(terminals.Where(t => t.Name.EndsWith("-t1", StringComparison.Ordinal)).Select(t => t.RefillAsync(bank, $"{t.Owner}-refill-1", RefillAmount)));
            output.WriteLine($"{terminals.Count} terminals enrolled, unlocked, owners refilled at {clock.Elapsed.TotalSeconds:0.0} s");

            // The given terminal: the node whose log shows its unlock holds its channel.
            var given = terminals[0];
            var unlocked = $"device {given.DeviceId}: unlock";
            for (var look = 0; look < 50 && !nodes.Any(n => n.Node.Output.Contains(unlocked, StringComparison.Ordinal)); look++) await Task.Delay(100);
            var holder = nodes.Single(n => n.Node.Output.Contains(unlocked, StringComparison.Ordinal));
            var survivors = nodes.Where(n => n.Port != holder.Port).ToList();

            var total = terminals.Count * Rounds;
            var done = 0;
            var sessions = 0;
            var killed = new TaskCompletionSource();
            var load = Stopwatch.StartNew();
            var loops = terminals.Select((t, i) => Task.Run(async () =>
            {
                var owner = OwnerNumber(t);
                for (var round = 0; round < Rounds && load.Elapsed < LoadLimit; round++)
                {
                    if (ReferenceEquals(t, given) && round == Rounds / 2)
                    {
                        holder.Node.Kill();
                        output.WriteLine($"SIGKILL to the node on port {holder.Port} (holding {given.Name}'s channel) after {load.Elapsed.TotalSeconds:0.0} s of load, {Volatile.Read(ref done)} of {total} rounds done");
                        killed.SetResult();
                    }
                    var market = markets[(i + round) % markets.Length];
                    await t.PayAsync(market, $"{t.Name}-{round}", 1 + (i + round) % 9);
                    var fetch = round % 3 == 0;
                    var page = await t.SessionAsync(site.Market.Port, round % 2 == 0 ? DelegationMode.Relay : DelegationMode.Handoff, fetch);
                    if (fetch) Assert.Contains($"Owner {owner:00} Example", page!, StringComparison.Ordinal);
                    Interlocked.Increment(ref sessions);
                    if (t.Name.EndsWith("-t2", StringComparison.Ordinal) && round == Rounds / 2) await t.RefillAsync(bank, $"{t.Owner}-refill-2", RefillAmount);
                    if (killed.Task.IsCompleted) Interlocked.Increment(ref t.DoneAfterKill);
                    Interlocked.Increment(ref done);
                }
            })).ToList();
            await Task.WhenAll(loops);
            load.Stop();
            var payments = markets.Sum(m => m.Payments.Count);
            output.WriteLine($"load: {payments} payments, {sessions} delegated sessions, {bank.Refills.Count} refills in {load.Elapsed.TotalSeconds:0.0} s " +
                $"({payments / load.Elapsed.TotalSeconds:0.0} payments/s, {sessions / load.Elapsed.TotalSeconds:0.0} sessions/s through the balancer); " +
                $"{terminals.Sum(t => t.Reconnects)} reconnects, {terminals.Sum(t => t.Failures.Count)} retried failures; first: {terminals.SelectMany(t => t.Failures).FirstOrDefault()}");
            Assert.True(killed.Task.IsCompleted, "the load ended before the node was killed");
            Assert.True(load.Elapsed < LoadLimit, $"the load did not finish within {LoadLimit.TotalSeconds:0} s");
            Assert.Equal(total, payments);
            Assert.Equal(total, sessions);
            Assert.True(holder.Node.HasExited);
            Assert.All(survivors, s => Assert.False(s.Node.HasExited));
            // The given terminal's channel broke with its node; it went on through another node without a PIN.
            Assert.True(given.Reconnects >= 1, "the given terminal's channel did not break with its node");
            Assert.True(given.DoneAfterKill > 0, "the given terminal did nothing after its node was killed");
            Assert.All(terminals, t => Assert.Equal(1, t.Unlocks));

            // One more payment per owner through the surviving nodes: a seal left a step ahead of the token by the kill is caught up.
            await Task.WhenAll(terminals.Where(t => t.Name.EndsWith("-t3", StringComparison.Ordinal)).Select(t => t.PayAsync(markets[0], $"{t.Name}-final", 1)));
            await CheckLedgersAsync(site, hosted, terminals, bank, markets);
            await CheckPinCountersAsync(database, terminals);
            await CheckRevocationAsync(database, terminals.Single(t => t.Name == "o02-t4"), survivors.Select(s => s.Port));
            await CheckIsolationAsync(site, terminals);
            output.WriteLine($"checked at {clock.Elapsed.TotalSeconds:0.0} s");
        }
        catch
        {
            // What the nodes said that was not routine: the first place to look when this test fails.
            foreach (var (node, port) in nodes)
            {
                var lines = node.Output.Split('\n');
                var unusual = lines.Select((l, i) => (l, i)).Where(x => x.l.Contains("failed", StringComparison.Ordinal) || x.l.Contains("session-end", StringComparison.Ordinal)).Take(4).SelectMany(x => lines.Skip(x.i).Take(5));
                output.WriteLine($"node {port}:\n  {string.Join("\n  ", unusual)}");
            }
            throw;
        }
        finally
        {
            foreach (var t in terminals) await t.DisposeAsync();
            await site.DisposeAsync();
        }
    }

    private static int OwnerNumber(FleetTerminal t) => int.Parse(t.Owner["owner-".Length..], System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// Per owner: the markets were handed exactly one payment id per request, the ledger's payments are
    /// exactly those (ids, amounts), its refills exactly the bank's, its balance their difference, its
    /// chain intact, and the purse seal's counter equal to the owner's counter in the site token.
    /// </summary>
    private static async Task CheckLedgersAsync(HostedSite site, HostSite hosted, List<FleetTerminal> terminals, MoneyParty bank, MoneyParty[] markets)
    {
        using var token = hosted.OpenToken();
        foreach (var owner in terminals.Select(t => t.Owner).Distinct())
        {
            var schema = HostSite.SchemaOf(owner);
            var handed = markets.SelectMany(m => m.Payments.Where(p => p.Key.Owner == owner).Select(p => (m.Name, p.Key.RequestId, Ids: p.Value.ToList()))).ToList();
            Assert.All(handed, h => Assert.True(h.Ids.Select(i => i.PaymentId).Distinct().Count() == 1, $"{owner}'s request {h.RequestId} at {h.Name} was paid as {string.Join(", ", h.Ids)}"));
            var expected = handed.Select(h => $"{h.Ids[0].PaymentId}|{h.Name}|{h.Ids[0].Amount}").Order().ToList();
            var ledger = (await site.QueryAsync($"SELECT payment_id || '|' || market || '|' || amount FROM {schema}.purse_payments")).Order().ToList();
            Assert.Equal(expected, ledger);
            var refills = bank.Refills.Where(r => r.Value.Owner == owner).ToList();
            Assert.Equal(refills.Select(r => r.Key).Order(), (await site.QueryAsync($"SELECT ref FROM {schema}.purse_log WHERE kind = 'refill'")).Order());
            var balance = long.Parse((await site.QueryAsync($"SELECT amount FROM {schema}.purse_balances WHERE currency = 'JPY'")).Single(), System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(refills.Sum(r => r.Value.Amount) - handed.Sum(h => h.Ids[0].Amount), balance);
            var seal = long.Parse((await site.QueryAsync($"SELECT counter FROM {schema}.purse_seal")).Single(), System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(seal, token.ReadPurseCounter(owner));
            var history = await terminals.First(t => t.Owner == owner && !t.Control.Closed.IsCancellationRequested)
                .WithRetryAsync(c => c.RequestAsync<WalletHistoryReply>(new WalletHistoryRequest(), CancellationToken.None));
            Assert.True(history.Intact, $"{owner}'s purse log does not verify");
        }
    }

    /// <summary>Owner n's terminals send n mod 3 wrong PIN2 guesses at once (through whichever nodes): exactly that many are counted, none lost or gained by the kill.</summary>
    private static async Task CheckPinCountersAsync(SiteDatabase database, List<FleetTerminal> terminals)
    {
        var guesses = terminals.GroupBy(OwnerNumber).SelectMany(g => g.Take(g.Key % 3)).ToList();
        await Task.WhenAll(guesses.Select(async t =>
        {
            var error = await Assert.ThrowsAsync<ControlErrorException>(() => t.UnlockAsync(FleetOwners.PinsOf(OwnerNumber(t)).Pin1, "0000"));
            Assert.Contains("wrong PIN2", error.Message, StringComparison.Ordinal);
        }));
        foreach (var group in terminals.GroupBy(OwnerNumber))
        {
            var row = database.Read(FleetOwners.NameOf(group.Key))!;
            Assert.Equal((0, group.Key % 3, false), (row.Pin1Failures, row.Pin2Failures, row.Disabled));
        }
    }

    /// <summary>
    /// A device revoked (as <c>host device revoke</c> does) loses its channel within a second (checked against half the
    /// nodes' 5 s backstop poll: only the change notice is that fast, on a machine as loaded as this test makes it), and
    /// each surviving node refuses a new one.
    /// </summary>
    private static async Task CheckRevocationAsync(SiteDatabase database, FleetTerminal device, IEnumerable<int> nodePorts)
    {
        var closed = device.Control.Closed;
        Assert.False(closed.IsCancellationRequested);
        Assert.True(await new DeviceRegistry(database.StoreOf(device.Owner)).RevokeAsync(device.Name));
        var clock = Stopwatch.StartNew();
        while (!closed.IsCancellationRequested && clock.Elapsed < TimeSpan.FromSeconds(5)) await Task.Delay(10);
        Assert.True(closed.IsCancellationRequested && clock.Elapsed < TimeSpan.FromSeconds(2.5), $"the revoked device's channel was still open {clock.Elapsed.TotalMilliseconds:0} ms after the revocation");
        foreach (var port in nodePorts)
        {
            var profile = TerminalProfile.Load(device.Directory);
            (profile with { Home = $"127.0.0.1:{port}" }).Save(device.Directory);
            var refused = await Assert.ThrowsAsync<ControlErrorException>(async () =>
            {
                await using var control = await TerminalClient.ConnectAsync(device.Directory, device.DeviceKey, CancellationToken.None);
                await new HomeControl(control).CardStatusAsync(CancellationToken.None);
            });
            Assert.Contains("revoked", refused.Message, StringComparison.Ordinal);
        }
    }

    /// <summary>Each owner's schema knows its own devices only: devices, sessions and audit lines name none of another owner's.</summary>
    private static async Task CheckIsolationAsync(HostedSite site, List<FleetTerminal> terminals)
    {
        foreach (var group in terminals.GroupBy(t => t.Owner))
        {
            var schema = HostSite.SchemaOf(group.Key);
            var own = group.Select(t => t.DeviceId).ToHashSet();
            Assert.Equal(group.Select(t => t.Name).Order(), (await site.QueryAsync($"SELECT name FROM {schema}.devices")).Order());
            Assert.All(await site.QueryAsync($"SELECT device_id FROM {schema}.device_sessions"), d => Assert.Contains(d, own));
            var audited = await site.QueryAsync($"SELECT DISTINCT device FROM {schema}.audit WHERE device IS NOT NULL");
            Assert.NotEmpty(audited);
            Assert.All(audited, d => Assert.Contains(d, own));
        }
    }
}
