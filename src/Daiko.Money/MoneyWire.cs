using System.Formats.Cbor;
using System.Security.Cryptography;
using System.Security.Cryptography.Cose;

namespace Daiko.Money;

/// <summary>The fields of a money message being written.</summary>
public sealed class MoneyWriter
{
    internal List<(string Key, Action<CborWriter> Value)> Entries { get; } = new();

    public void Text(string name, string value) => Entries.Add((name, w => w.WriteTextString(value)));

    public void Integer(string name, long value) => Entries.Add((name, w => w.WriteInt64(value)));

    public void Time(string name, DateTimeOffset value) => Integer(name, value.ToUnixTimeSeconds());
}

/// <summary>The fields of a received money message; a missing or wrong-typed field is <see cref="PurseRefusal.Malformed"/>, naming it.</summary>
public sealed class MoneyReader
{
    private readonly Dictionary<string, object> _fields;

    private MoneyReader(string kind, Dictionary<string, object> fields)
    {
        Kind = kind;
        _fields = fields;
    }

    public string Kind { get; }

    private PurseException Missing(string name, string what) => new(PurseRefusal.Malformed, $"the {Kind} lacks its '{name}' field ({what})");

    public string Text(string name) => _fields.TryGetValue(name, out var v) && v is string s ? Printable(name, s) : throw Missing(name, "text");

    public string TextOrEmpty(string name) => _fields.TryGetValue(name, out var v) && v is string s ? Printable(name, s) : "";

    /// <summary>The kinds other parties sign (markets and banks): the ones whose text is checked.</summary>
    private static readonly HashSet<string> FromOutside = [MoneyKinds.PaymentRequest, MoneyKinds.Refill, MoneyKinds.CancellationConfirmation];

    /// <summary>
    /// A text field as the purse may store, log, chain and mail it: no control character (a NUL that one
    /// database refuses would fail every payment sharing the commit; a line break would add lines of its
    /// own to the mailed report and split the log's entry text another way).
    /// </summary>
    private string Printable(string name, string text)
    {
        // The card's own records (its seal, its log head, its answers) are read back as they were made: a purse
        // that took such a character before this check must still open.
        if (!FromOutside.Contains(Kind)) return text;
        foreach (var c in text)
        {
            if (char.IsControl(c)) throw new PurseException(PurseRefusal.Malformed, $"the {Kind}'s '{name}' field holds a control character (U+{(int)c:X4})");
            // A line or paragraph separator or a direction override would rearrange what the owner reads in the mailed report.
            if (char.GetUnicodeCategory(c) is System.Globalization.UnicodeCategory.Format or System.Globalization.UnicodeCategory.LineSeparator
                or System.Globalization.UnicodeCategory.ParagraphSeparator)
            {
                throw new PurseException(PurseRefusal.Malformed, $"the {Kind}'s '{name}' field holds an invisible formatting character (U+{(int)c:X4})");
            }
        }
        // Three capital letters, as ISO 4217 codes are: the purse's seal and log join a currency with other fields as text,
        // and a currency holding the joining characters could make two different records read the same. Only a refill
        // brings a currency into the purse (a payment needs a balance in it, a confirmation names its payment's): one the
        // purse took before this rule is still paid and confirmed in.
        if (name == "currency" && Kind == MoneyKinds.Refill && !(text.Length == 3 && text.All(char.IsAsciiLetterUpper)))
        {
            throw new PurseException(PurseRefusal.Malformed, $"the {Kind}'s currency '{text}' is not a currency code (three capital letters, as ISO 4217 has them)");
        }
        return text;
    }

    public long Integer(string name) => _fields.TryGetValue(name, out var v) && v is long l ? l : throw Missing(name, "an integer");

    public DateTimeOffset Time(string name)
    {
        var seconds = Integer(name);
        return seconds is >= 0 and <= 253402300799 ? DateTimeOffset.FromUnixTimeSeconds(seconds) : throw Missing(name, "a time");
    }

    internal static MoneyReader Parse(ReadOnlyMemory<byte> payload)
    {
        try
        {
            var r = new CborReader(payload, CborConformanceMode.Canonical);
            var count = r.ReadStartMap() ?? throw new PurseException(PurseRefusal.Malformed, "indefinite map");
            string? kind = null;
            var fields = new Dictionary<string, object>(StringComparer.Ordinal);
            for (var i = 0; i < count; i++)
            {
                var key = r.ReadTextString();
                object value = r.PeekState() switch
                {
                    CborReaderState.TextString => r.ReadTextString(),
                    CborReaderState.UnsignedInteger or CborReaderState.NegativeInteger => r.ReadInt64(),
                    _ => throw new PurseException(PurseRefusal.Malformed, $"unexpected value for '{key}'"),
                };
                if (key == "kind") kind = value as string ?? throw new PurseException(PurseRefusal.Malformed, "the kind is not text");
                else fields[key] = value;
            }
            r.ReadEndMap();
            if (r.BytesRemaining != 0) throw new PurseException(PurseRefusal.Malformed, "trailing bytes");
            return new MoneyReader(kind ?? throw new PurseException(PurseRefusal.Malformed, "a money message without a kind"), fields);
        }
        catch (Exception e) when (e is CborContentException or InvalidOperationException or FormatException or OverflowException)
        {
            throw new PurseException(PurseRefusal.Malformed, "the money message's content is malformed");
        }
    }
}

/// <summary>Verifies and reads signed money messages as their typed records.</summary>
public static class MoneyCodec
{
    /// <summary>Verifies a COSE_Sign1 money message with its owner's key and reads it as <typeparamref name="T"/>; PurseException otherwise.</summary>
    public static T Verify<T>(byte[] cose, ECDsa ownerKey) where T : MoneyMessage, IMoneyKind<T>
    {
        var message = Decode(cose, T.WireKind);
        bool valid;
        try
        {
            valid = message.Content is not null && message.VerifyEmbedded(ownerKey);
        }
        catch (CryptographicException)
        {
            valid = false;
        }
        if (!valid) throw new PurseException(PurseRefusal.BadSignature, $"the {T.WireKind}'s signature does not verify: it was forged or altered");
        return Read<T>(message.Content!.Value);
    }

    /// <summary>Reads a message without verifying its signature: only to learn whose key verifies it, never to act on it.</summary>
    public static T ReadUnverified<T>(byte[] cose) where T : MoneyMessage, IMoneyKind<T> =>
        Read<T>(Decode(cose, T.WireKind).Content ?? throw new PurseException(PurseRefusal.Malformed, $"the {T.WireKind} has no content"));

    private static CoseSign1Message Decode(byte[] cose, string kind)
    {
        try
        {
            return CoseMessage.DecodeSign1(cose);
        }
        catch (CryptographicException)
        {
            throw new PurseException(PurseRefusal.Malformed, $"the {kind} is not a valid COSE_Sign1 message");
        }
    }

    private static T Read<T>(ReadOnlyMemory<byte> payload) where T : MoneyMessage, IMoneyKind<T>
    {
        var fields = MoneyReader.Parse(payload);
        if (fields.Kind != T.WireKind) throw new PurseException(PurseRefusal.Malformed, $"expected a {T.WireKind}, got a {fields.Kind}");
        return T.Read(fields);
    }
}

/// <summary>A money message kind that can be read back as its record (through its field table).</summary>
public interface IMoneyKind<T> where T : MoneyMessage, IMoneyKind<T>
{
    static abstract string WireKind { get; }

    /// <summary>The message's fields, in the order of its record's constructor.</summary>
    static abstract MoneyFields<T> Fields { get; }

    static virtual T Read(MoneyReader fields) => T.Fields.Read(fields);
}
