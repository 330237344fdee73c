using System.Buffers.Binary;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace Daiko.Cards.Tokens;

/// <summary>
/// A counter kept in a token that only moves forward (the purse seal's). Tokens keep a data object's
/// value read-only, so a new value is a new private data object under the same label and the old ones
/// are destroyed after it: a crash in between leaves two, and the highest counts.
/// </summary>
internal static class TokenCounter
{
    /// <summary>The highest value under <paramref name="label"/>; null when none was written yet.</summary>
    public static long? Read(Pkcs11Module module, ISession session, string label)
    {
        long? highest = null;
        foreach (var counter in Find(module, session, label))
        {
            var value = session.GetAttributeValue(counter, [CKA.CKA_VALUE])[0].GetValueAsByteArray();
            if (value.Length != 8) throw new InvalidDataException($"the counter '{label}' in the token is damaged");
            var read = BinaryPrimitives.ReadInt64BigEndian(value);
            if (highest is null || read > highest) highest = read;
        }
        return highest;
    }

    /// <summary>Moves the counter under <paramref name="label"/> to <paramref name="value"/>; a value not above the current one is refused.</summary>
    public static void Advance(Pkcs11Module module, ISession session, string label, long value)
    {
        if (Read(module, session, label) is { } current && value <= current) throw new InvalidOperationException($"the purse counter only moves forward ({current} → {value} refused)");
        var old = Find(module, session, label);
        var bytes = new byte[8];
        BinaryPrimitives.WriteInt64BigEndian(bytes, value);
        var f = module.Factories.ObjectAttributeFactory;
        session.CreateObject(
        [
            f.Create(CKA.CKA_CLASS, CKO.CKO_DATA),
            f.Create(CKA.CKA_TOKEN, true),
            f.Create(CKA.CKA_PRIVATE, true),
            f.Create(CKA.CKA_LABEL, label),
            f.Create(CKA.CKA_APPLICATION, "daiko"),
            f.Create(CKA.CKA_VALUE, bytes),
        ]);
        foreach (var handle in old) session.DestroyObject(handle);
    }

    private static List<IObjectHandle> Find(Pkcs11Module module, ISession session, string label)
    {
        var f = module.Factories.ObjectAttributeFactory;
        return session.FindAllObjects([f.Create(CKA.CKA_CLASS, CKO.CKO_DATA), f.Create(CKA.CKA_LABEL, label)]);
    }
}
