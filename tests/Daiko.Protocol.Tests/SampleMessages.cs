using Daiko.Protocol;
using Daiko.Protocol.Messages;
using Daiko.Tls;

namespace Daiko.Protocol.Tests;

/// <summary>One filled-in instance of every control message, every optional field set.</summary>
internal static class SampleMessages
{
    private static readonly byte[] Der = [0x30, 0x03, 0x02, 0x01, 0x01];

    public static SessionTicket Ticket() => new([1, 2, 3], new byte[32], CipherSuite.Aes128GcmSha256, "market.example", "http/1.1", 7200, 12345, 16384,
        DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000), [9, 9]);

    public static ExportedSession Session() => new(CipherSuite.Aes128GcmSha256, new byte[32], new byte[32], 3, 4, new byte[32], "market.example", null, [5], [6, 7]);

    public static IEnumerable<ControlMessage> All()
    {
        var market = new MarketAddress("market.example", 443, "market.example", "h2");
        yield return new EnrollRequest("ABCDEFGHJKMN", [0x30, 0x59, 1, 2]);
        yield return new EnrolledReply("0123456789abcdef", "phone", Der, Der);
        yield return new UnlockRequest("1111", "2222");
        yield return new UnlockedReply(CardState.CryptoReady);
        yield return new LockRequest();
        yield return new LockedReply(CardState.RemoteAccessWait);
        yield return new CardStatusRequest();
        yield return new CardStatusReply(CardState.Locked, 3, 2);
        yield return new DelegateRequest(market, DelegationMode.Handoff, Fresh: true);
        yield return new TicketReply(Ticket());
        yield return new SecretsReply(Session(), 7);
        yield return new RelayReply(8);
        yield return new AssistReply([Der, Der]);
        yield return new PrefetchRequest(market, 2);
        yield return new PrefetchedReply(2, 1);
        yield return new StockRequest(market, 2);
        yield return new StockedReply([Ticket(), Ticket()], 1);
        yield return new DropTicketsNotice("the home card was locked");
        yield return new CostRequest();
        yield return new CostReply(1200, 2400, 3, 2);
        yield return new SignRequest(SignatureScheme.EcdsaSecp256r1Sha256, new byte[130], new byte[300]);
        yield return new SignatureReply([1, 2, 3]);
        yield return new VerifyChainRequest("market.example", [Der]);
        yield return new VerdictReply(false, CertificateProblem.UntrustedRoot, "unknown root");
        yield return new RelayData(9, new byte[] { 1, 2, 3 });
        yield return new RelayClose(9, "done");
        yield return new RelayWindow(9, 131072);
        yield return new ErrorReply(ErrorCode.WrongPin2, "wrong PIN2: 2 tries left", 2);
        yield return new WalletBalanceRequest();
        yield return new WalletBalanceReply("card-1", [new CurrencyAmount("JPY", 1000), new CurrencyAmount("EUR", -5)]);
        yield return new WalletHistoryRequest();
        yield return new WalletHistoryReply(["{\"seq\":1}"], true);
        yield return new WalletPayRequest([0xd2, 0x84, 0x40, 0xa0, 0x41, 0x01, 0x40]);
        yield return new WalletPaymentReply([0xd2, 0x84, 0x40, 0xa0, 0x41, 0x02, 0x40], "pay-1");
        yield return new WalletRefillRequest([0xd2, 0x84, 0x40, 0xa0, 0x41, 0x03, 0x40]);
        yield return new WalletRefillAckReply([0x84, 0x40, 0xa0, 0xf6, 0x40]);
        yield return new WalletCancelRequest("pay-1");
        yield return new WalletCancellationReply([0xd2, 0x84, 0x40, 0xa0, 0x41, 0x05, 0x40], "https://market.example/");
        yield return new WalletConfirmRequest([0xd2, 0x84, 0x40, 0xa0, 0x41, 0x06, 0x40]);
        yield return new WalletCreditedReply(900);
        yield return new WalletMailRequest();
        yield return new WalletMailedReply(1, 0);
        yield return new ApplianceListRequest();
        yield return new AppliancesReply(["living-room", "kitchen"]);
        yield return new ApplianceStateRequest("living-room");
        yield return new ApplianceStateReply("{\"target_celsius\":21}");
        yield return new ApplianceCommandRequest("living-room", "set-target", [KeyValuePair.Create("celsius", "24")]);
        yield return new ApplianceReadingsRequest("living-room", 5);
        yield return new ApplianceReadingsReply(["2026-01-01T00:00:00Z {}"]);
        yield return new PimSyncRequest(3, [new PimEntryChange("c1", PimEntryKind.Contact, 0, false, "{}")]);
        yield return new PimSyncedReply(4, [new PimEntryResult("c1", PimEntryOutcome.Conflict, "changed", 2)], [new PimEntry("c1", PimEntryKind.Todo, 2, true, "{}")]);
    }

    public static TheoryData<string> Names()
    {
        var data = new TheoryData<string>();
        foreach (var m in All()) data.Add(m.GetType().Name);
        return data;
    }

    public static ControlMessage Named(string name) => All().Single(m => m.GetType().Name == name);
}
