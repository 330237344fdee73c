using System.Security.Cryptography;
using Daiko.Money;

namespace Daiko.Fuzz;

/// <summary>
/// The COSE_Sign1 money messages as the purse and the wallet read them: the key id, the signer's key,
/// each kind read unverified and verified against a fixed key. A message that reads is signed again and
/// must verify and read back to the same record. Refusals are <see cref="PurseException"/> only.
/// </summary>
internal static class MoneyTarget
{
    public static readonly FuzzTarget Money = new("money",
        "COSE_Sign1 money messages: kid and signer key, every kind read unverified and verified; what reads is re-signed and read back",
        Read, e => e is PurseException);

    /// <summary>The fixed P-256 key the seeds are signed with (so verification succeeds on them).</summary>
    internal static readonly ECDsa Key = FixedKey();

    private static ECDsa FixedKey()
    {
        var d = SHA256.HashData("daiko fuzz money key"u8);
        var key = ECDsa.Create();
        key.ImportParameters(new ECParameters { Curve = ECCurve.NamedCurves.nistP256, D = d });
        return key;
    }

    private static void Read(byte[] input)
    {
        _ = MoneyMessage.KeyIdOf(input);
        MoneyMessage.SignerKeyOf(input)?.Dispose();
        PurseException? last = null;
        var accepted = false;
        foreach (var kind in Kinds)
        {
            try
            {
                kind(input);
                accepted = true;
            }
            catch (PurseException e)
            {
                last = e;
            }
        }
        if (!accepted) throw last!;
    }

    private static readonly Action<byte[]>[] Kinds =
    [
        RoundTrip<PaymentRequest>, RoundTrip<Payment>, RoundTrip<Refill>, RoundTrip<RefillAck>,
        RoundTrip<Cancellation>, RoundTrip<CancellationConfirmation>, RoundTrip<LogHead>, RoundTrip<BalanceSeal>,
    ];

    private static void RoundTrip<T>(byte[] cose) where T : MoneyMessage, IMoneyKind<T>
    {
        var unverified = MoneyCodec.ReadUnverified<T>(cose);
        var verified = MoneyCodec.Verify<T>(cose, Key);
        if (verified != unverified) throw new FuzzFinding($"a {T.WireKind} reads differently verified and unverified");
        var again = MoneyCodec.Verify<T>(unverified.Sign(Key), Key);
        if (again != unverified) throw new FuzzFinding($"a {T.WireKind} changed when signed and read back");
    }
}
