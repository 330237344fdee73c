using System.Text.RegularExpressions;

namespace Daiko.Tls.Tests.Rfc8448;

/// <summary>One labelled value of an RFC 8448 trace: the step it belongs to, its label and bytes.</summary>
internal sealed record TraceValue(string Step, string Label, byte[] Bytes);

/// <summary>
/// Parses a section of RFC 8448 (January 2019; page breaks removed) into its steps and hex values.
/// Vectors/rfc8448.txt is the published RFC, not the working group's 2018 draft of the traces.
/// </summary>
internal sealed partial class Rfc8448Trace
{
    private readonly List<TraceValue> _values;

    private Rfc8448Trace(List<TraceValue> values, Dictionary<string, byte[]> privateKeys)
    {
        _values = values;
        PrivateKeys = privateKeys;
    }

    /// <summary>The server's RSA key of §2, by the RFC's labels ("modulus (public)", "prime1", ...).</summary>
    public IReadOnlyDictionary<string, byte[]> PrivateKeys { get; }

    public static Rfc8448Trace Section(string title)
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Vectors", "rfc8448.txt");
        var lines = File.ReadAllLines(path);
        if (!lines.Any(l => l.StartsWith("Request for Comments: 8448", StringComparison.Ordinal)))
        {
            throw new InvalidOperationException("Vectors/rfc8448.txt is not the published RFC 8448");
        }
        var start = Array.FindIndex(lines, l => l.StartsWith(title, StringComparison.Ordinal) && !l.Contains(". .", StringComparison.Ordinal));
        if (start < 0) throw new InvalidOperationException($"section '{title}' not found");
        var end = Array.FindIndex(lines, start + 1, l => SectionHeading().IsMatch(l));
        var values = new List<TraceValue>();
        string step = "";
        string? label = null;
        var expected = 0;
        var hex = new List<byte>();
        foreach (var raw in lines[start..(end < 0 ? lines.Length : end)])
        {
            if (PageFooter().IsMatch(raw) || raw.StartsWith("RFC 8448 ", StringComparison.Ordinal)) continue;
            var stepMatch = StepLine().Match(raw);
            if (stepMatch.Success)
            {
                Flush();
                step = stepMatch.Groups[1].Value.Trim();
                continue;
            }
            var valueMatch = ValueLine().Match(raw);
            if (valueMatch.Success)
            {
                Flush();
                label = valueMatch.Groups[1].Value;
                expected = int.Parse(valueMatch.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
                AddHex(valueMatch.Groups[3].Value);
                continue;
            }
            if (label is not null && hex.Count < expected && HexLine().IsMatch(raw))
            {
                AddHex(raw);
            }
            else if (raw.Trim().Length > 0 && label is not null && hex.Count >= expected)
            {
                Flush();
            }
        }
        Flush();
        return new Rfc8448Trace(values, ReadPrivateKeys(lines));

        void AddHex(string text)
        {
            foreach (var h in text.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                if (h.Length == 2 && Uri.IsHexDigit(h[0]) && Uri.IsHexDigit(h[1])) hex.Add(Convert.ToByte(h, 16));
            }
        }

        void Flush()
        {
            if (label is not null)
            {
                if (hex.Count != expected && expected != 0) throw new InvalidOperationException($"{step} / {label}: read {hex.Count} of {expected} octets");
                values.Add(new TraceValue(step, label, hex.ToArray()));
            }
            label = null;
            hex.Clear();
            expected = 0;
        }
    }

    private static Dictionary<string, byte[]> ReadPrivateKeys(string[] lines)
    {
        var start = Array.FindIndex(lines, l => l.StartsWith("2.  Private Keys", StringComparison.Ordinal));
        var end = Array.FindIndex(lines, start + 1, l => SectionHeading().IsMatch(l));
        var keys = new Dictionary<string, List<byte>>();
        List<byte>? current = null;
        foreach (var raw in lines[start..end])
        {
            if (PageFooter().IsMatch(raw) || raw.StartsWith("RFC 8448 ", StringComparison.Ordinal)) continue;
            var m = KeyLine().Match(raw);
            if (m.Success)
            {
                current = keys[m.Groups[1].Value] = new List<byte>();
                AddTo(current, m.Groups[2].Value);
            }
            else if (current is not null && HexLine().IsMatch(raw))
            {
                AddTo(current, raw);
            }
        }
        return keys.ToDictionary(k => k.Key, k => k.Value.ToArray());

        static void AddTo(List<byte> bytes, string text) =>
            bytes.AddRange(text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(h => Convert.ToByte(h, 16)));
    }

    /// <summary>The <paramref name="occurrence"/>-th value labelled <paramref name="label"/> under a step starting with <paramref name="stepPrefix"/>.</summary>
    public byte[] Get(string stepPrefix, string label, int occurrence = 0)
    {
        var found = _values.Where(v => v.Step.StartsWith(stepPrefix, StringComparison.Ordinal) && v.Label == label).ToList();
        if (found.Count <= occurrence) throw new KeyNotFoundException($"no '{label}' #{occurrence} under '{stepPrefix}'");
        return found[occurrence].Bytes;
    }

    public IEnumerable<byte[]> All(string stepPrefix, string label) =>
        _values.Where(v => v.Step.StartsWith(stepPrefix, StringComparison.Ordinal) && v.Label == label).Select(v => v.Bytes);

    [GeneratedRegex(@"^\d+\.\s+\S")]
    private static partial Regex SectionHeading();

    [GeneratedRegex(@"^Thomson\s+Informational")]
    private static partial Regex PageFooter();

    [GeneratedRegex(@"^\s{3}(\{(client|server)\}.*)$")]
    private static partial Regex StepLine();

    [GeneratedRegex(@"^\s{6}(\S[^(]*?) \((\d+) octets\):\s*(.*)$")]
    private static partial Regex ValueLine();

    [GeneratedRegex(@"^\s{3}(\S[^:]*):\s+((?:[0-9a-f]{2}\s*)+)$")]
    private static partial Regex KeyLine();

    [GeneratedRegex(@"^\s+([0-9a-f]{2}\s*)+$")]
    private static partial Regex HexLine();
}

/// <summary>The parts of a non-seekable duplex test stream that never change; subclasses say how to read and write.</summary>
internal abstract class DuplexTestStream : Stream
{
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
    public abstract override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default);
    public abstract override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default);
}

/// <summary>A transport that plays the server's recorded bytes and records what the client writes.</summary>
internal sealed class ScriptedTransport : DuplexTestStream
{
    private readonly MemoryStream _server;
    private readonly MemoryStream _written = new();

    public ScriptedTransport(byte[] serverBytes) => _server = new MemoryStream(serverBytes);

    public byte[] Written => _written.ToArray();

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.FromResult(_server.Read(buffer.Span));
    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        _written.Write(buffer.Span);
        return ValueTask.CompletedTask;
    }
}

/// <summary>Accepts the RFC 8448 server certificate (self-signed, long expired) for replay only.</summary>
internal sealed class AcceptTraceCertificate : IServerCertificateValidator
{
    public ValueTask<CertificateVerdict> ValidateAsync(string? serverName, IReadOnlyList<byte[]> chain, CancellationToken cancellationToken) =>
        ValueTask.FromResult(CertificateVerdict.Ok);
}

internal static class ClientHelloParts
{
    /// <summary>Splits a ServerHello (or HelloRetryRequest) message into its random, suite and extensions.</summary>
    public static (byte[] Random, CipherSuite Suite, List<(ushort, byte[])> Extensions) SplitServerHello(byte[] serverHello)
    {
        var p = 4 + 2;
        var random = serverHello[p..(p + 32)];
        p += 32;
        p += 1 + serverHello[p];
        var suite = (CipherSuite)((serverHello[p] << 8) | serverHello[p + 1]);
        p += 3;
        return (random, suite, Extensions(serverHello, p));
    }

    /// <summary>Splits a ClientHello message into its random, suites and extensions.</summary>
    public static (byte[] Random, CipherSuite[] Suites, List<(ushort, byte[])> Extensions) Split(byte[] clientHello)
    {
        var p = 4 + 2;
        var random = clientHello[p..(p + 32)];
        p += 32;
        p += 1 + clientHello[p];
        var suitesLength = (clientHello[p] << 8) | clientHello[p + 1];
        p += 2;
        var suites = new CipherSuite[suitesLength / 2];
        for (var i = 0; i < suites.Length; i++) suites[i] = (CipherSuite)((clientHello[p + 2 * i] << 8) | clientHello[p + 2 * i + 1]);
        p += suitesLength;
        p += 1 + clientHello[p];
        return (random, suites, Extensions(clientHello, p));
    }

    private static List<(ushort, byte[])> Extensions(byte[] message, int p)
    {
        var extensionsEnd = p + 2 + ((message[p] << 8) | message[p + 1]);
        p += 2;
        var extensions = new List<(ushort, byte[])>();
        while (p < extensionsEnd)
        {
            var type = (ushort)((message[p] << 8) | message[p + 1]);
            var length = (message[p + 2] << 8) | message[p + 3];
            extensions.Add((type, message[(p + 4)..(p + 4 + length)]));
            p += 4 + length;
        }
        return extensions;
    }
}
