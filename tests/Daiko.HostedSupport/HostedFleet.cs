using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Cards;
using Daiko.Cards.Access;
using Daiko.Cards.Site;
using Daiko.Home.Devices;
using Daiko.Home.Policy;
using Daiko.Home.Storage;
using Daiko.Host;
using Daiko.Money;
using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.Terminal;
using Daiko.Terminal.Sessions;
using Daiko.TestSupport;

namespace Daiko.TestSupport.Hosted;

/// <summary>A bank or market of the test: its name (the id in its money messages) and signing key, and what it recorded.</summary>
public sealed class MoneyParty(string name)
{
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public string Name => name;

    public string PublicKeyPem => _key.ExportSubjectPublicKeyInfoPem();

    /// <summary>The market's record: (owner, request id) → every payment id handed to it for that request (one, unless a payment was doubled).</summary>
    public ConcurrentDictionary<(string Owner, string RequestId), ConcurrentBag<(string PaymentId, long Amount)>> Payments { get; } = new();

    /// <summary>The bank's record: refill id → (owner, amount), entered when the card's acknowledgement came back.</summary>
    public ConcurrentDictionary<string, (string Owner, long Amount)> Refills { get; } = new();

    public byte[] PaymentRequest(string requestId, long amount)
    {
        lock (_key) return new PaymentRequest(name, "order-" + requestId, requestId, amount, "JPY", DateTimeOffset.UtcNow.AddHours(1), "").Sign(_key);
    }

    public byte[] Refill(string card, string refillId, long amount)
    {
        lock (_key) return new Refill(name, card, refillId, amount, "JPY", DateTimeOffset.UtcNow.AddHours(1)).Sign(_key);
    }
}

/// <summary>
/// One simulated terminal of a hosted owner, in the test's process: its own directory, access card and
/// enrolled device key, and its own control channel through the balancer, driven through the terminal
/// SDK. When its channel breaks (a node killed), it opens a new one with its device key — no PIN.
/// </summary>
public sealed class FleetTerminal : IAsyncDisposable
{
    public const string AccessPin = "432100";

    private readonly AccessCard _access;

    private FleetTerminal(string owner, string name, string directory, AccessCard access, ControlConnection control)
    {
        Owner = owner;
        Name = name;
        Directory = directory;
        _access = access;
        Control = control;
        DeviceId = TerminalProfile.Load(directory).DeviceId;
    }

    public string Owner { get; }

    public string Name { get; }

    public string Directory { get; }

    public string DeviceId { get; }

    public ControlConnection Control { get; private set; }

    public ECDsa DeviceKey => _access.DeviceKey;

    /// <summary>New control channels opened after the first one broke.</summary>
    public int Reconnects { get; private set; }

    /// <summary>Unlock requests this terminal sent (each carries PIN1 and PIN2).</summary>
    public int Unlocks { get; private set; }

    /// <summary>Operations completed after the node holding this terminal's channel was killed.</summary>
    public int DoneAfterKill;

    public ConcurrentQueue<string> Failures { get; } = new();

    /// <summary>
    /// An enrollment code written as <c>daiko host device add</c> writes it (the loopback markets allowed),
    /// the terminal's enrollment through <paramref name="endpoint"/>, and its control channel.
    /// </summary>
    public static async Task<FleetTerminal> EnrollAsync(SiteDatabase database, byte[] siteSpkiHash, string owner, string name, string work, string endpoint)
    {
        var store = database.StoreOf(owner);
        var (secret, expires) = await new DeviceRegistry(store).AddEnrollmentCodeAsync(name);
        Require.That(await database.RegisterCodeAsync(secret[..EnrollmentCode.PublicIdLength], owner, expires), "the code's public id is taken");
        await new SqlDevicePolicyStore(store).SaveAsync(name, DevicePolicy.Default with
        {
            Markets = DevicePolicy.ParseMarkets(LoopbackMarkets.Markets),
            MaxTickets = LoopbackMarkets.MaxTickets,
        });
        var directory = Path.Combine(work, name);
        await TerminalClient.EnrollAsync(directory, endpoint, EnrollmentCode.Compose(secret, siteSpkiHash), AccessPin,
            createAccessCard: (d, p) => AccessCard.Create(d, p, AccessCardKdf.ForTests));
        var access = AccessCard.Open(directory, idleTimeout: TimeSpan.FromHours(1));
        access.Unlock(AccessPin);
        var control = await TerminalClient.ConnectAsync(directory, access.DeviceKey, CancellationToken.None);
        return new FleetTerminal(owner, name, directory, access, control);
    }

    public async Task UnlockAsync(string pin1, string pin2)
    {
        Unlocks++;
        await new HomeControl(Control).UnlockAsync(pin1, pin2, CancellationToken.None);
    }

    /// <summary>
    /// Runs <paramref name="operation"/> on the current channel; a failure (a node killed, a refusal) is
    /// recorded and the operation run again — on a new channel through the balancer when the old one
    /// broke — at most <paramref name="attempts"/> times. Money operations are retried with the same
    /// signed message, so a retry gets the first answer if the first attempt committed.
    /// </summary>
    public async Task<T> WithRetryAsync<T>(Func<ControlConnection, Task<T>> operation, int attempts = 8)
    {
        for (var attempt = 1; ; attempt++)
        {
            var control = Control;
            try
            {
                return await operation(control).WaitAsync(TimeSpan.FromSeconds(30));
            }
            catch (Exception e) when (attempt < attempts && e is not OutOfMemoryException)
            {
                Failures.Enqueue($"{e.GetType().Name}: {e.Message}");
                if (control.Closed.IsCancellationRequested || e is IOException or TimeoutException or ObjectDisposedException) await ReconnectAsync(control);
                else await Task.Delay(50 * attempt);
            }
        }
    }

    /// <summary>A new control channel with the device key (no PIN: the unlock session is in the database).</summary>
    private async Task ReconnectAsync(ControlConnection broken)
    {
        if (!ReferenceEquals(broken, Control)) return;
        await broken.DisposeAsync();
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                Control = await TerminalClient.ConnectAsync(Directory, _access.DeviceKey, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(20));
                Reconnects++;
                return;
            }
            catch (Exception e) when (attempt < 20 && e is not OutOfMemoryException)
            {
                Failures.Enqueue($"reconnect: {e.GetType().Name}: {e.Message}");
                await Task.Delay(250);
            }
        }
    }

    /// <summary>One delegated session to the market (relay or handoff); every third one fetches the market's page, which names the client certificate.</summary>
    public async Task<string?> SessionAsync(int marketPort, DelegationMode mode, bool fetch)
    {
        return await WithRetryAsync<string?>(async control =>
        {
            var connector = new DelegatedConnector(control) { TerminalRoute = (_, port) => ("127.0.0.1", port) };
            var session = await connector.ConnectAsync("localhost", marketPort, mode);
            await using var stream = session.Stream;
            if (!fetch) return null;
            await stream.WriteAsync("GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"u8.ToArray());
            using var answer = new MemoryStream();
            await stream.CopyToAsync(answer);
            return System.Text.Encoding.ASCII.GetString(answer.ToArray());
        });
    }

    /// <summary>A payment of <paramref name="amount"/> JPY to <paramref name="market"/> under a request id of this terminal's; the market records the payment id it is handed.</summary>
    public async Task PayAsync(MoneyParty market, string requestId, long amount)
    {
        var request = market.PaymentRequest(requestId, amount);
        var reply = await WithRetryAsync(c => c.RequestAsync<WalletPaymentReply>(new WalletPayRequest(request), CancellationToken.None));
        var payment = MoneyCodec.ReadUnverified<Payment>(reply.Payment);
        Require.That(reply.PaymentId == payment.PaymentId, $"the payment names {payment.PaymentId}, its reply {reply.PaymentId}");
        market.Payments.GetOrAdd((Owner, requestId), _ => new()).Add((payment.PaymentId, payment.Amount));
    }

    /// <summary>A refill from <paramref name="bank"/> for this owner's card; the bank records it once the card acknowledged it.</summary>
    public async Task RefillAsync(MoneyParty bank, string refillId, long amount)
    {
        var card = (await WithRetryAsync(c => c.RequestAsync<WalletBalanceReply>(new WalletBalanceRequest(), CancellationToken.None))).CardId;
        var refill = bank.Refill(card, refillId, amount);
        var ack = await WithRetryAsync(c => c.RequestAsync<WalletRefillAckReply>(new WalletRefillRequest(refill), CancellationToken.None));
        var acknowledged = MoneyCodec.ReadUnverified<RefillAck>(ack.Ack);
        Require.That(refillId == acknowledged.RefillId, $"refill {refillId} was acknowledged as {acknowledged.RefillId}");
        Require.That(bank.Refills.TryAdd(refillId, (Owner, amount)), $"refill {refillId} acknowledged twice");
    }

    public async ValueTask DisposeAsync()
    {
        await Control.DisposeAsync();
        _access.Dispose();
    }
}

/// <summary>Owners provisioned as <c>host owner add</c> and <c>host cert import</c> do, in the test's process (twenty CLI runs of each would take minutes).</summary>
public static class FleetOwners
{
    public static (string Pin1, string Pin2) PinsOf(int owner) => ($"11{owner:00}1", $"22{owner:00}2");

    public static string NameOf(int owner) => $"owner-{owner:00}";

    public static string SubjectOf(int owner) => $"CN=Owner {owner:00} Example, O=Daiko Users";

    public static async Task AddAsync(HostedSite site, SiteDatabase database, SiteToken token, int owner, IEnumerable<(MoneyParty Party, PayeeRole Role)> payees)
    {
        var name = NameOf(owner);
        var (pin1, pin2) = PinsOf(owner);
        var row = HostedCard.Provision(token, name, pin1, pin2, "admin-code-" + name);
        Require.That(await database.AddOwnerAsync(row), $"{name} exists already");
        var request = CertificateRequest.LoadSigningRequest(token.CreateCertificateSigningRequest(name, row.TlsKeyInfo, SubjectOf(owner)), HashAlgorithmName.SHA256);
        using var certificate = site.Pki.IssueForPublicKey(request.PublicKey, SubjectOf(owner));
        new HostedCard(name, token, database).ImportCertificate(certificate.RawData, [], pin2);
        var store = new SqlPayeeStore(database.StoreOf(name));
        foreach (var (party, role) in payees) await store.AddAsync(new Payee(party.Name, role, party.PublicKeyPem, DateTimeOffset.UtcNow));
    }
}
