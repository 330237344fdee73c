using BenchmarkDotNet.Attributes;
using Daiko.Tls;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Records;

namespace Daiko.Bench.Micro;

/// <summary>Record protection and key schedule, with allocations (steady-state sealing should allocate nothing).</summary>
[MemoryDiagnoser]
public class RecordLayerBenchmarks
{
    private RecordProtection _seal = null!;
    private RecordProtection _open = null!;
    private byte[] _plaintext = null!;
    private byte[] _record = null!;
    private byte[] _secret = null!;

    [Params(1024, 16384)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _secret = new byte[32];
        _seal = new RecordProtection(CipherSuiteInfo.Aes128Gcm, (byte[])_secret.Clone());
        _open = new RecordProtection(CipherSuiteInfo.Aes128Gcm, (byte[])_secret.Clone());
        _plaintext = new byte[Size];
        _record = new byte[Size + 64];
    }

    [Benchmark]
    public int SealRecord() => _seal.Seal(ContentType.ApplicationData, _plaintext, 0, _record);

    [Benchmark]
    public byte[] DeriveTrafficKeys() => TrafficSecrets.Keys(CipherSuiteInfo.Aes128Gcm, _secret).Key;

    [Benchmark]
    public int HandshakeKeySchedule()
    {
        using var early = new EarlySecret(CipherSuiteInfo.Aes128Gcm, ReadOnlySpan<byte>.Empty);
        using var handshake = early.Next(_secret);
        using var master = handshake.Next();
        return master.ClientApplicationTrafficSecret(_secret).Length;
    }
}
