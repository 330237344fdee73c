using System.Buffers.Binary;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;

namespace Daiko.Cards.Tokens;

/// <summary>
/// A counter kept in a token that only moves forward (the purse seal's). Tokens keep a data object's
/// value read-only, so a new value is a new private data object under the same label and the old ones
/// are destroyed after it: a crash in between leaves two, and the highest counts. Several processes may
/// move one counter (the nodes of a hosted deployment share the site token): a value not above the
/// current one is already reached and leaves the counter as it is, and an old object another process
/// destroyed first is gone already.
/// </summary>
internal static class TokenCounter
{
    /// <summary>The highest value under <paramref name="label"/>; null when none was written yet.</summary>
    public static long? Read(Pkcs11Module module, ISession session, string label)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return ReadOnce(module, session, label);
            }
            catch (Pkcs11Exception e) when (e.RV == CKR.CKR_OBJECT_HANDLE_INVALID && attempt < 8)
            {
                // Another process moved the counter between the search and the read (its old object is
                // gone, a higher one is there): search again rather than miss the value.
            }
        }
    }

    private static long? ReadOnce(Pkcs11Module module, ISession session, string label)
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

    /// <summary>Moves the counter under <paramref name="label"/> up to <paramref name="value"/>; it never moves back (a value not above the current one changes nothing).</summary>
    public static void Advance(Pkcs11Module module, ISession session, string label, long value)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                AdvanceOnce(module, session, label, value);
                return;
            }
            catch (Pkcs11Exception e) when (attempt < 8 && e.RV is CKR.CKR_TEMPLATE_INCONSISTENT or CKR.CKR_GENERAL_ERROR or CKR.CKR_DEVICE_ERROR)
            {
                // SoftHSM2's file store refuses a write that races another process's write to the same
                // token; after a pause the counter is read again (the other process may have moved it already).
                Thread.Sleep(Random.Shared.Next(5, 20) * attempt);
            }
        }
    }

    private static void AdvanceOnce(Pkcs11Module module, ISession session, string label, long value)
    {
        if (Read(module, session, label) is { } current && value <= current) return;
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
        foreach (var handle in old)
        {
            try
            {
                session.DestroyObject(handle);
            }
            catch (Pkcs11Exception e) when (e.RV == CKR.CKR_OBJECT_HANDLE_INVALID)
            {
                // Another process moved the counter at the same moment and destroyed this one first.
            }
        }
    }

    private static List<IObjectHandle> Find(Pkcs11Module module, ISession session, string label)
    {
        var f = module.Factories.ObjectAttributeFactory;
        return session.FindAllObjects([f.Create(CKA.CKA_CLASS, CKO.CKO_DATA), f.Create(CKA.CKA_LABEL, label)]);
    }
}
