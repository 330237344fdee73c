using System.Security.Cryptography;
using Daiko.Cards;
using Daiko.Money;
using Daiko.Home.Mail;
using Daiko.Home.Money;
using Daiko.Home.Tests.Server;
using Daiko.TestSupport;
using Xunit;

namespace Daiko.Home.Tests.Money;

/// <summary>The payment log by mail, through a real SMTP server (aiosmtpd).</summary>
[Collection("home card")]
public sealed class ReportOutboxTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-mail");
    private readonly HomeCard _card;
    private readonly ECDsa _bank = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly PurseLedger _ledger;
    private readonly ReportOutbox _outbox;

    public ReportOutboxTests()
    {
        _card = HomeCard.Initialize(new HomeCardOptions(_dir.Path), HomeCardKeyType.P256, HomeFixture.Pin1, HomeFixture.Pin2, "admin-code-123");
        _card.EnterPin1(HomeFixture.Pin1);
        _card.EnterPin2(HomeFixture.Pin2);
        var db = Path.Combine(_dir.Path, "home.db");
        _ledger = new PurseLedger(db, new HomeCardPurse(_card), (p, role) => p == "bank.test" && role == Daiko.Home.Storage.PayeeRole.Bank ? _bank : null);
        _outbox = new ReportOutbox(Daiko.Home.Storage.HomeStore.Sqlite(db).MailOutbox);
        _ledger.Refill(new Refill("bank.test", _card.CardId, "r1", 4_200L, "JPY", DateTimeOffset.UtcNow.AddMinutes(5)).Sign(_bank));
        _sinceFirstEntry = System.Diagnostics.Stopwatch.StartNew();
    }

    /// <summary>Started when the purse's first entry (the refill) was made: what a first report's interval counts from.</summary>
    private readonly System.Diagnostics.Stopwatch _sinceFirstEntry;

    public void Dispose()
    {
        _card.Dispose();
        _bank.Dispose();
        _dir.Dispose();
    }

    [Fact]
    public async Task ThePeriodicReport_IsDueAnIntervalAfterTheNewestQueued_NotAnIntervalAfterTheServerStarted()
    {
        using var smtp = await SmtpSink.StartAsync(_dir.Path);
        var reports = ReportsTo(smtp);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await reports.MailNowAsync(CancellationToken.None);
        Assert.Single(smtp.Messages());

        // A server (re)started 8 s after that report, reporting every 10 s: the next is due 10 s after the
        // report, at about 11 s with its 1.5 s looks, not 10 s after its start (18 s). The bound between
        // the two leaves a loaded machine 5 s for the looks and the mail's delivery.
        await Task.Delay(TimeSpan.FromSeconds(8));
        await RunUntilAsync(reports, TimeSpan.FromSeconds(10), () => smtp.Messages().Count >= 2, clock, TimeSpan.FromSeconds(25));

        Assert.Equal(2, smtp.Messages().Count);
        Assert.InRange(clock.Elapsed.TotalSeconds, 9.9, 16);
    }

    [Fact]
    public async Task AFirstPeriodicReport_IsDueAnIntervalAfterThePursesFirstEntry_UnderAnIdNamingTheReportItFollows()
    {
        using var smtp = await SmtpSink.StartAsync(_dir.Path);
        // Counted from the refill, not from the mail server's start: on a busy machine the server takes seconds to start.
        var clock = _sinceFirstEntry;

        // No report was ever queued; the purse's first entry (the refill) was made as the test began.
        await RunUntilAsync(ReportsTo(smtp), TimeSpan.FromSeconds(6), () => smtp.Messages().Count >= 1, clock, TimeSpan.FromSeconds(16));

        var mail = Assert.Single(smtp.Messages());
        // Not before the 6 s interval, nor at twice it; between, a loaded machine has time for the mail server's start and the delivery.
        Assert.InRange(clock.Elapsed.TotalSeconds, 5.5, 11.4);
        Assert.Contains($"Message-Id: <{_card.CardId[..16]}-after-0@daiko.home>", mail, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task APeriodicReportDue_WhileNoDeviceHasTheCardUnlocked_IsMailedAllTheSame_WithoutTheSignedHead()
    {
        using var smtp = await SmtpSink.StartAsync(_dir.Path);
        // A device paid and locked again (a thief's way): the card waits for the next unlock, as after every lock.
        _card.Done();
        Assert.NotEqual(HomeCardState.CryptoReady, _card.State);
        var clock = System.Diagnostics.Stopwatch.StartNew();

        await RunUntilAsync(ReportsTo(smtp), TimeSpan.FromSeconds(4), () => smtp.Messages().Count >= 1, clock, TimeSpan.FromSeconds(12));

        var mail = Assert.Single(smtp.Messages());
        Assert.Contains("4200 JPY", mail, StringComparison.Ordinal);
        Assert.Contains("log intact: yes", mail, StringComparison.Ordinal);
        Assert.Contains(ReportOutbox.NoSignedHead, mail.Replace("\r\n", " ").Replace("\n", " "), StringComparison.Ordinal);
        Assert.DoesNotContain("COSE_Sign1", mail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TwoSendersDeliveringOneOutboxAtOnce_SendEachMailOnce()
    {
        using var smtp = await SmtpSink.StartAsync(_dir.Path);
        var settings = new MailSettings("127.0.0.1", smtp.Port, "daiko@home.test", "alice@example.test");
        var ids = new List<string>();
        for (var i = 0; i < 12; i++) ids.Add(await _outbox.EnqueueReportAsync(_ledger, "alice@example.test", _card.CardId, CancellationToken.None, $"report-{i}@daiko.home"));
        // A second store on the same file, as a second node of a hosted deployment has its own.
        var other = new ReportOutbox(Daiko.Home.Storage.HomeStore.Sqlite(Path.Combine(_dir.Path, "home.db")).MailOutbox);

        var sent = await Task.WhenAll(Task.Run(() => _outbox.DeliverAsync(settings, CancellationToken.None)),
            Task.Run(() => other.DeliverAsync(settings, CancellationToken.None)), Task.Run(() => other.DeliverAsync(settings, CancellationToken.None)));

        Assert.Equal(12, sent.Sum());
        var messageIds = smtp.Messages().Select(m => System.Text.RegularExpressions.Regex.Match(m, "^Message-Id: <([^>]+)>", System.Text.RegularExpressions.RegexOptions.Multiline | System.Text.RegularExpressions.RegexOptions.IgnoreCase).Groups[1].Value).ToList();
        Assert.Equal(ids.Order(), messageIds.Order());
        Assert.Equal(0, await _outbox.PendingAsync());
    }

    [Fact]
    public async Task AQueuedReportWithoutAValidAddress_GoesToTheOwnersAddress_AndHoldsBackNoOther()
    {
        using var smtp = await SmtpSink.StartAsync(_dir.Path);
        await _outbox.EnqueueReportAsync(_ledger, "<alice@example.test", _card.CardId, CancellationToken.None, "bad-to@daiko.home");
        await _outbox.EnqueueReportAsync(_ledger, "alice@example.test", _card.CardId, CancellationToken.None, "good-to@daiko.home");

        Assert.Equal(2, await _outbox.DeliverAsync(new MailSettings("127.0.0.1", smtp.Port, "daiko@home.test", "owner@example.test"), CancellationToken.None));

        var mails = smtp.Messages();
        Assert.Contains(mails, m => m.Contains("bad-to@daiko.home", StringComparison.Ordinal) && m.Contains("To: owner@example.test", StringComparison.OrdinalIgnoreCase));
        Assert.Contains(mails, m => m.Contains("good-to@daiko.home", StringComparison.Ordinal) && m.Contains("To: alice@example.test", StringComparison.OrdinalIgnoreCase));
        Assert.Equal(0, await _outbox.PendingAsync());
    }

    [Fact]
    public async Task AReportWhoseRecipientTheServerRefuses_IsCountedAndLeftQueued_AndTheOthersStillGo()
    {
        using var smtp = await SmtpSink.StartAsync(_dir.Path, refusing: "gone@");
        await _outbox.EnqueueReportAsync(_ledger, "gone@example.test", _card.CardId, CancellationToken.None, "refused-to@daiko.home");
        await _outbox.EnqueueReportAsync(_ledger, "alice@example.test", _card.CardId, CancellationToken.None, "after-it@daiko.home");

        Assert.Equal(1, await _outbox.DeliverAsync(new MailSettings("127.0.0.1", smtp.Port, "daiko@home.test", "alice@example.test"), CancellationToken.None));

        Assert.Contains("after-it@daiko.home", Assert.Single(smtp.Messages()), StringComparison.Ordinal);
        var outbox = Daiko.Home.Storage.HomeStore.Sqlite(Path.Combine(_dir.Path, "home.db")).MailOutbox;
        var left = Assert.Single(await outbox.PendingAsync());
        Assert.Equal(("refused-to@daiko.home", 1), (left.MessageId, left.Attempts));
        // Given back at once: the next delivery may try it again without waiting for the claim to lapse.
        var now = DateTimeOffset.UtcNow;
        Assert.True(await outbox.ClaimAsync(left.Id, "next", now, now.AddMinutes(1)));
    }

    [Fact]
    public async Task SettingsWithABadFromAddress_AreRefusedNamingIt_AndNoMailIsClaimed()
    {
        using var smtp = await SmtpSink.StartAsync(_dir.Path);
        await _outbox.EnqueueReportAsync(_ledger, "alice@example.test", _card.CardId, CancellationToken.None, "waiting@daiko.home");

        var bad = await Assert.ThrowsAsync<PurseException>(() => _outbox.DeliverAsync(new MailSettings("127.0.0.1", smtp.Port, "daiko@@home", "alice@example.test"), CancellationToken.None));

        Assert.Contains("From address 'daiko@@home' is not a mail address", bad.Message, StringComparison.Ordinal);
        Assert.Empty(smtp.Messages());
        var outbox = Daiko.Home.Storage.HomeStore.Sqlite(Path.Combine(_dir.Path, "home.db")).MailOutbox;
        var now = DateTimeOffset.UtcNow;
        Assert.True(await outbox.ClaimAsync(Assert.Single(await outbox.PendingAsync()).Id, "next", now, now.AddMinutes(1)));
    }

    private PaymentReports ReportsTo(SmtpSink smtp) =>
        new(_dir.Path, _card, _ledger, _outbox, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance,
            () => new MailSettings("127.0.0.1", smtp.Port, "daiko@home.test", "alice@example.test"));

    /// <summary>Runs the periodic report every <paramref name="interval"/> until <paramref name="done"/> (or <paramref name="clock"/> reads <paramref name="most"/>), then stops it.</summary>
    private static async Task RunUntilAsync(PaymentReports reports, TimeSpan interval, Func<bool> done, System.Diagnostics.Stopwatch clock, TimeSpan most)
    {
        using var stop = new CancellationTokenSource();
        var running = reports.RunAsync(interval, TimeProvider.System, stop.Token);
        while (!done() && clock.Elapsed < most) await Task.Delay(50);
        clock.Stop();
        await stop.CancelAsync();
        await running;
    }

    [Fact]
    public async Task Report_IsDelivered_WithTheLogAndTheCardSignedHead()
    {
        using var smtp = await SmtpSink.StartAsync(_dir.Path);
        await _outbox.EnqueueReportAsync(_ledger, "alice@example.test", _card.CardId);

        Assert.Equal(1, await _outbox.DeliverAsync(new MailSettings("127.0.0.1", smtp.Port, "daiko@home.test", "alice@example.test"), CancellationToken.None));

        var mail = Assert.Single(smtp.Messages());
        Assert.Contains("To: alice@example.test", mail, StringComparison.Ordinal);
        Assert.Contains("refill", mail, StringComparison.Ordinal);
        Assert.Contains("4200 JPY", mail, StringComparison.Ordinal);
        Assert.Contains("log intact: yes", mail, StringComparison.Ordinal);
        Assert.Equal(0, await _outbox.PendingAsync());

        // The head in the mail is signed by this card, over the log's last hash and entry count.
        using var parsed = MimeKit.MimeMessage.Load(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(mail)));
        var lines = (parsed.TextBody ?? "").Split('\n').Select(l => l.TrimEnd('\r')).ToList();
        var signed = Convert.FromBase64String(lines.Single(l => l.StartsWith("card-signed head (COSE_Sign1, base64): ", StringComparison.Ordinal)).Split(": ")[1]);
        using var cardKey = _card.PursePublicKey();
        var head = MoneyCodec.Verify<LogHead>(signed, cardKey);
        Assert.Equal(lines.Single(l => l.StartsWith("chain head: ", StringComparison.Ordinal))["chain head: ".Length..], head.Head);
        Assert.Equal(_ledger.History()[^1].Hash, head.Head);
        Assert.Equal(1, head.Entries);
        Assert.Equal(_card.CardId, head.Card);
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Assert.Throws<PurseException>(() => MoneyCodec.Verify<LogHead>(signed, other));
    }

    [Fact]
    public async Task SmtpDownThenUp_DeliversExactlyOneReport()
    {
        var port = Loopback.FreePort();
        var settings = new MailSettings("127.0.0.1", port, "daiko@home.test", "alice@example.test");
        await _outbox.EnqueueReportAsync(_ledger, "alice@example.test", _card.CardId);

        Assert.Equal(0, await _outbox.DeliverAsync(settings, CancellationToken.None));
        Assert.Equal(1, await _outbox.PendingAsync());

        using var smtp = await SmtpSink.StartAsync(_dir.Path, port);
        Assert.Equal(1, await _outbox.DeliverAsync(settings, CancellationToken.None));
        Assert.Equal(0, await _outbox.DeliverAsync(settings, CancellationToken.None));

        Assert.Single(smtp.Messages());
    }
}
