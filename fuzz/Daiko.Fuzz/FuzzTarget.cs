namespace Daiko.Fuzz;

/// <summary>
/// One fuzz target: a function of the product that takes untrusted bytes, and the exceptions by which
/// it may refuse them. Any other exception, a crash or a hang is a finding.
/// </summary>
public sealed record FuzzTarget(string Name, string Description, Action<byte[]> Run, Func<Exception, bool> IsExpected)
{
    /// <summary>Runs one input: true when the input was accepted, false when refused as expected; throws on a finding.</summary>
    public bool Execute(byte[] input) => Execute(input, out _);

    /// <summary>Runs one input; <paramref name="refusal"/> is the expected exception that refused it.</summary>
    public bool Execute(byte[] input, out Exception? refusal)
    {
        refusal = null;
        try
        {
            Run(input);
            return true;
        }
        catch (Exception e) when (IsExpected(e))
        {
            refusal = e;
            return false;
        }
    }
}

/// <summary>Thrown by a target when an input breaks a property (e.g. what was read cannot be written and read back identically).</summary>
public sealed class FuzzFinding(string message) : Exception(message);

/// <summary>Every target, by name.</summary>
public static class FuzzTargets
{
    public static readonly IReadOnlyList<FuzzTarget> All =
    [
        TlsTargets.Tls13,
        TlsTargets.Tls12,
        TlsTargets.Records,
        ControlTargets.Control,
        ControlTargets.Codecs,
        MoneyTarget.Money,
        PkiTarget.Pki,
        ProxyTarget.Proxy,
    ];

    public static FuzzTarget? Find(string name) => All.FirstOrDefault(t => t.Name == name);

    /// <summary>Throws a finding unless two encodings are the same bytes.</summary>
    internal static void SameBytes(ReadOnlySpan<byte> first, ReadOnlySpan<byte> second, string what)
    {
        if (!first.SequenceEqual(second)) throw new FuzzFinding($"{what}: decoding then encoding again changed the bytes");
    }

    /// <summary>Completes a ValueTask that finishes synchronously over a MemoryStream.</summary>
    internal static T Sync<T>(ValueTask<T> task) => task.IsCompleted ? task.Result : task.AsTask().GetAwaiter().GetResult();
}
