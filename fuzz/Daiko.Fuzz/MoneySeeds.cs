using System.Formats.Cbor;
using System.Security.Cryptography;
using System.Security.Cryptography.Cose;

namespace Daiko.Fuzz;

/// <summary>
/// Money messages of every kind as their signers make them: a canonical CBOR map signed as COSE_Sign1
/// (ES256) with the money target's fixed key, once with the key in the clear and once naming it by kid
/// (as the home card does). Written at the wire level so the seeds do not follow the records' shapes.
/// </summary>
internal static class MoneySeeds
{
    private const long At = 1_760_000_000;

    private static readonly (string Kind, (string Key, object Value)[] Fields)[] Messages =
    [
        ("payment-request", [("market", "market.example"), ("order", "order-1"), ("request_id", "req-1"), ("amount", 1200L), ("currency", "JPY"), ("expires", At + 600), ("url", "https://market.example/pay")]),
        ("payment", [("card", "card-1"), ("payment_id", "pay-1"), ("request_hash", new string('a', 64)), ("market", "market.example"), ("order", "order-1"), ("amount", 1200L), ("currency", "JPY"), ("at", At)]),
        ("refill", [("bank", "bank.example"), ("card", "card-1"), ("refill_id", "refill-1"), ("amount", 50_000L), ("currency", "JPY"), ("expires", At + 3600)]),
        ("refill-ack", [("card", "card-1"), ("refill_id", "refill-1"), ("amount", 50_000L), ("currency", "JPY"), ("at", At)]),
        ("cancellation", [("card", "card-1"), ("payment_id", "pay-1"), ("market", "market.example"), ("amount", -1200L), ("currency", "EUR"), ("at", At)]),
        ("cancellation-confirmation", [("market", "market.example"), ("payment_id", "pay-1"), ("amount", 1200L), ("currency", "JPY"), ("at", At)]),
        ("log-head", [("card", "card-1"), ("entries", 3L), ("head", new string('b', 64)), ("at", At)]),
        ("purse-seal", [("card", "card-1"), ("counter", 9L), ("head", new string('c', 64)), ("entries", 3L), ("balances", "{\"JPY\":48800}")]),
    ];

    public static IEnumerable<byte[]> All()
    {
        var kid = MoneyTarget.Key.ExportSubjectPublicKeyInfo();
        foreach (var (kind, fields) in Messages)
        {
            var payload = Payload(kind, fields);
            yield return CoseSign1Message.SignEmbedded(payload, new CoseSigner(MoneyTarget.Key, HashAlgorithmName.SHA256));
            var headers = new CoseHeaderMap { [CoseHeaderLabel.KeyIdentifier] = CoseHeaderValue.FromBytes(kid) };
            yield return CoseSign1Message.SignEmbedded(payload, new CoseSigner(MoneyTarget.Key, HashAlgorithmName.SHA256, headers));
        }
    }

    private static byte[] Payload(string kind, (string Key, object Value)[] fields)
    {
        var entries = fields.Prepend((Key: "kind", Value: (object)kind)).OrderBy(e => e.Key.Length).ThenBy(e => e.Key, StringComparer.Ordinal).ToList();
        var w = new CborWriter(CborConformanceMode.Canonical);
        w.WriteStartMap(entries.Count);
        foreach (var (key, value) in entries)
        {
            w.WriteTextString(key);
            if (value is long l) w.WriteInt64(l);
            else w.WriteTextString((string)value);
        }
        w.WriteEndMap();
        return w.Encode();
    }
}
