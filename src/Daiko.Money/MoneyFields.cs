using System.Reflection;

namespace Daiko.Money;

/// <summary>One field of a money message: its wire name and type, how it is taken from the record, and how it is read back.</summary>
public sealed class MoneyField<T>
{
    internal MoneyField(string name, Type type, Action<MoneyWriter, T> write, Func<MoneyReader, object> read)
    {
        Name = name;
        Type = type;
        Write = write;
        Read = read;
    }

    /// <summary>The field's key in the signed CBOR map.</summary>
    public string Name { get; }

    internal Type Type { get; }

    internal Action<MoneyWriter, T> Write { get; }

    internal Func<MoneyReader, object> Read { get; }
}

/// <summary>The field kinds a money message is made of: text, integers (minor units, counts) and times (Unix seconds).</summary>
public static class MoneyField
{
    public static MoneyField<T> Text<T>(string name, Func<T, string> get) => new(name, typeof(string), (w, m) => w.Text(name, get(m)), r => r.Text(name));

    /// <summary>Text that older senders may leave out (read as "").</summary>
    public static MoneyField<T> OptionalText<T>(string name, Func<T, string> get) => new(name, typeof(string), (w, m) => w.Text(name, get(m)), r => r.TextOrEmpty(name));

    public static MoneyField<T> Integer<T>(string name, Func<T, long> get) => new(name, typeof(long), (w, m) => w.Integer(name, get(m)), r => r.Integer(name));

    public static MoneyField<T> Time<T>(string name, Func<T, DateTimeOffset> get) => new(name, typeof(DateTimeOffset), (w, m) => w.Time(name, get(m)), r => r.Time(name));
}

/// <summary>
/// A money message's field table: the one description of its wire shape. Fields are listed in the order
/// of the record's constructor (checked when the table is built); writing walks the table, and reading
/// reads each field by name and calls the constructor with the values.
/// </summary>
public sealed class MoneyFields<T> where T : MoneyMessage
{
    private readonly MoneyField<T>[] _fields;
    private readonly ConstructorInfo _constructor;

    public MoneyFields(params MoneyField<T>[] fields)
    {
        _fields = fields;
        var types = fields.Select(f => f.Type).ToArray();
        _constructor = typeof(T).GetConstructor(types)
            ?? throw new InvalidOperationException($"{typeof(T).Name} has no constructor ({string.Join(", ", types.Select(t => t.Name))}) matching its field table");
    }

    public IEnumerable<string> Names => _fields.Select(f => f.Name);

    internal void Write(MoneyWriter w, T message)
    {
        foreach (var field in _fields) field.Write(w, message);
    }

    internal T Read(MoneyReader r) => (T)_constructor.Invoke(_fields.Select(f => f.Read(r)).ToArray());
}

/// <summary>A money message described by its field table: its kind and fields come from <typeparamref name="T"/>.</summary>
public abstract record MoneyMessage<T> : MoneyMessage where T : MoneyMessage<T>, IMoneyKind<T>
{
    public sealed override string Kind => T.WireKind;

    internal sealed override void Write(MoneyWriter w) => T.Fields.Write(w, (T)this);
}
