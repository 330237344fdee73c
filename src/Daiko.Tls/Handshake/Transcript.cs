using Daiko.Tls.KeySchedule;

namespace Daiko.Tls.Handshake;

/// <summary>
/// The handshake transcript. Messages are kept until the suite (and so the hash) is known; hashes
/// are computed over the whole list, which is small.
/// </summary>
internal sealed class Transcript
{
    private readonly List<byte[]> _messages = new();

    public void Add(byte[] message) => _messages.Add(message);

    /// <summary>Every message so far, concatenated (what a TLS 1.2 CertificateVerify signs).</summary>
    public byte[] Bytes() => _messages.SelectMany(m => m).ToArray();

    public byte[] Hash(CipherSuiteInfo suite) => HashWith(suite, ReadOnlySpan<byte>.Empty);

    /// <summary>Hash of the transcript followed by <paramref name="partial"/> (a truncated ClientHello for binders).</summary>
    public byte[] HashWith(CipherSuiteInfo suite, ReadOnlySpan<byte> partial)
    {
        using var hash = suite.NewTranscriptHash();
        foreach (var m in _messages) hash.AppendData(m);
        hash.AppendData(partial);
        return hash.GetHashAndReset();
    }

    /// <summary>After a HelloRetryRequest, ClientHello1 is replaced by message_hash(Hash(ClientHello1)).</summary>
    public void ReplaceFirstWithMessageHash(CipherSuiteInfo suite)
    {
        var first = _messages[0];
        _messages[0] = Messages.SimpleMessages.MessageHash(suite.HashData(first));
    }
}
