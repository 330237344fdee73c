using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Threading.Channels;
using NSec.Cryptography;

namespace Daiko.TestSupport.Hostile;

/// <summary>How the hostile peer runs the handshake; the defaults give a correct TLS 1.3 handshake.</summary>
public sealed record HandshakePlan
{
    /// <summary>Runs before the ServerHello is sent (a stall, a flood of plaintext records).</summary>
    public Func<HostileConnection, Task>? BeforeServerHello { get; init; }

    /// <summary>The version in the ServerHello's supported_versions extension.</summary>
    public ushort SupportedVersion { get; init; } = 0x0304;

    /// <summary>Send a HelloRetryRequest asking for this group first.</summary>
    public ushort? RetryGroup { get; init; }

    /// <summary>The group named in the ServerHello's key share (default: x25519, with a real share).</summary>
    public ushort? ServerHelloGroup { get; init; }

    public IReadOnlyList<(ushort Type, byte[] Data)> ExtraEncryptedExtensions { get; init; } = [];

    /// <summary>When set, a CertificateRequest with these extensions follows EncryptedExtensions.</summary>
    public IReadOnlyList<(ushort Type, byte[] Data)>? CertificateRequestExtensions { get; init; }
}

/// <summary>What became of one connection: the client's alert, and how far it got.</summary>
public sealed record HostileOutcome(bool HandshakeCompleted, byte? ClientAlert, bool ClientClosed, Exception? Error);

/// <summary>
/// A scriptable TLS 1.3 server (TLS_AES_128_GCM_SHA256, x25519, ECDSA P-256) on 127.0.0.1 that completes
/// a real handshake and then runs a script that misbehaves as told. After the script it waits (bounded)
/// for the client's alert or close and reports an outcome per connection.
/// </summary>
public sealed class HostileTlsServer : IAsyncDisposable
{
    private const ushort X25519 = 29;
    private static readonly byte[] HelloRetryRandom = Convert.FromHexString("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C");
    private readonly Socket _listener;
    private readonly X509Certificate2 _certificate;
    private readonly HandshakePlan _plan;
    private readonly Func<HostileConnection, Task> _script;
    private readonly Channel<HostileOutcome> _outcomes = Channel.CreateUnbounded<HostileOutcome>();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;

    public HostileTlsServer(X509Certificate2 certificate, Func<HostileConnection, Task> script, HandshakePlan? plan = null)
    {
        _certificate = certificate;
        _script = script;
        _plan = plan ?? new HandshakePlan();
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(16);
        Port = ((IPEndPoint)_listener.LocalEndPoint!).Port;
        _accepting = AcceptLoopAsync();
    }

    public int Port { get; }

    public string Url(string path = "/") => $"https://localhost:{Port}{path}";

    /// <summary>The outcome of the next connection to finish.</summary>
    public async Task<HostileOutcome> NextOutcomeAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        return await _outcomes.Reader.ReadAsync(cts.Token);
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try { socket = await _listener.AcceptAsync(_stop.Token); }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException) { return; }
            var acceptedAt = System.Diagnostics.Stopwatch.GetTimestamp();
            _ = Task.Run(() => ServeAsync(socket, acceptedAt));
        }
    }

    private async Task ServeAsync(Socket socket, long acceptedAt)
    {
        using var connection = new HostileConnection(socket, acceptedAt);
        var completed = false;
        Exception? error = null;
        try
        {
            await HandshakeAsync(connection);
            completed = true;
            await _script(connection);
        }
        catch (Exception e)
        {
            error = e;
        }
        await connection.WaitForClientAlertAsync(TimeSpan.FromSeconds(10));
        _outcomes.Writer.TryWrite(new HostileOutcome(completed, connection.ClientAlert, connection.ClientClosed, error));
    }

    private async Task HandshakeAsync(HostileConnection c)
    {
        var transcript = new List<byte>();
        var hello = await c.ReadHandshakeAsync();
        if (_plan.RetryGroup is { } retryGroup)
        {
            transcript.AddRange(HostileConnection.HandshakeMessage(254, SHA256.HashData(hello)));
            var hrr = ServerHello(HelloRetryRandom, [(43, U16(0x0304)), (51, U16(retryGroup))]);
            transcript.AddRange(hrr);
            await c.SendPlainRecordAsync(22, hrr);
            hello = await c.ReadHandshakeAsync();
        }
        transcript.AddRange(hello);
        if (_plan.BeforeServerHello is { } before) await before(c);

        var clientShare = FindX25519Share(hello);
        using var key = Key.Create(KeyAgreementAlgorithm.X25519);
        var group = _plan.ServerHelloGroup ?? X25519;
        byte[] shared;
        byte[] ourShare;
        if (group == X25519 && clientShare is not null)
        {
            var peer = NSec.Cryptography.PublicKey.Import(KeyAgreementAlgorithm.X25519, clientShare, KeyBlobFormat.RawPublicKey);
            using var secret = KeyAgreementAlgorithm.X25519.Agree(key, peer, new SharedSecretCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport })
                ?? throw new IOException("x25519 agreement failed");
            shared = secret.Export(SharedSecretBlobFormat.RawSharedSecret);
            ourShare = key.PublicKey.Export(KeyBlobFormat.RawPublicKey);
        }
        else
        {
            shared = new byte[32];
            ourShare = RandomNumberGenerator.GetBytes(group == X25519 ? 32 : 65);
            if (group != X25519) ourShare[0] = 4;
        }
        var serverHello = ServerHello(RandomNumberGenerator.GetBytes(32), [(43, U16(_plan.SupportedVersion)), (51, [.. U16(group), .. U16((ushort)ourShare.Length), .. ourShare])]);
        transcript.AddRange(serverHello);
        await c.SendPlainRecordAsync(22, serverHello);

        var early = Tls13Keys.Extract(new byte[32], new byte[32]);
        var handshakeSecret = Tls13Keys.Extract(Tls13Keys.Derived(early), shared);
        var hash = SHA256.HashData(transcript.ToArray());
        var clientHs = Tls13Keys.ExpandLabel(handshakeSecret, "c hs traffic", hash, 32);
        var serverHs = Tls13Keys.ExpandLabel(handshakeSecret, "s hs traffic", hash, 32);
        c.Read = new PeerCipher(clientHs);
        c.Write = new PeerCipher(serverHs);

        var flight = new List<byte>();
        void Add(byte[] message)
        {
            flight.AddRange(message);
            transcript.AddRange(message);
        }
        Add(HostileConnection.HandshakeMessage(8, Block(_plan.ExtraEncryptedExtensions)));
        if (_plan.CertificateRequestExtensions is { } crExtensions)
        {
            Add(HostileConnection.HandshakeMessage(13, [0, .. Block(crExtensions)]));
        }
        var der = _certificate.RawData;
        byte[] entry = [(byte)(der.Length >> 16), (byte)(der.Length >> 8), (byte)der.Length, .. der, 0, 0];
        Add(HostileConnection.HandshakeMessage(11, [0, (byte)(entry.Length >> 16), (byte)(entry.Length >> 8), (byte)entry.Length, .. entry]));
        using var ecdsa = _certificate.GetECDsaPrivateKey() ?? throw new InvalidOperationException("the hostile peer needs an ECDSA certificate with its key");
        byte[] signed = [.. Enumerable.Repeat((byte)0x20, 64), .. "TLS 1.3, server CertificateVerify"u8, 0, .. SHA256.HashData(transcript.ToArray())];
        var signature = ecdsa.SignData(signed, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        Add(HostileConnection.HandshakeMessage(15, [4, 3, .. U16((ushort)signature.Length), .. signature]));
        Add(HostileConnection.HandshakeMessage(20, Tls13Keys.FinishedMac(serverHs, SHA256.HashData(transcript.ToArray()))));
        await c.SendRecordAsync(22, flight.ToArray());

        var master = Tls13Keys.Extract(Tls13Keys.Derived(handshakeSecret), new byte[32]);
        hash = SHA256.HashData(transcript.ToArray());
        var clientAp = Tls13Keys.ExpandLabel(master, "c ap traffic", hash, 32);
        var serverAp = Tls13Keys.ExpandLabel(master, "s ap traffic", hash, 32);
        while ((await c.ReadHandshakeAsync())[0] != 20)
        {
            // The client's Certificate and CertificateVerify, when asked for, come before its Finished.
        }
        c.Read.Dispose();
        c.Write.Dispose();
        c.Read = new PeerCipher(clientAp);
        c.Write = new PeerCipher(serverAp);
    }

    private static byte[] ServerHello(byte[] random, IReadOnlyList<(ushort Type, byte[] Data)> extensions) =>
        HostileConnection.HandshakeMessage(2, [3, 3, .. random, 0, 0x13, 0x01, 0, .. Block(extensions)]);

    private static byte[] U16(ushort value) => [(byte)(value >> 8), (byte)value];

    private static byte[] Block(IReadOnlyList<(ushort Type, byte[] Data)> extensions)
    {
        var body = extensions.SelectMany(e => (byte[])[.. U16(e.Type), .. U16((ushort)e.Data.Length), .. e.Data]).ToArray();
        return [.. U16((ushort)body.Length), .. body];
    }

    /// <summary>The client's x25519 key share from a ClientHello message (header included), if any.</summary>
    private static byte[]? FindX25519Share(byte[] hello)
    {
        var p = 4 + 2 + 32;
        p += 1 + hello[p];
        p += 2 + ((hello[p] << 8) | hello[p + 1]);
        p += 1 + hello[p];
        var end = p + 2 + ((hello[p] << 8) | hello[p + 1]);
        for (p += 2; p < end;)
        {
            var type = (hello[p] << 8) | hello[p + 1];
            var length = (hello[p + 2] << 8) | hello[p + 3];
            if (type == 51)
            {
                for (var q = p + 6; q < p + 4 + length;)
                {
                    var group = (hello[q] << 8) | hello[q + 1];
                    var size = (hello[q + 2] << 8) | hello[q + 3];
                    if (group == X25519) return hello[(q + 4)..(q + 4 + size)];
                    q += 4 + size;
                }
            }
            p += 4 + length;
        }
        return null;
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Dispose();
        await _accepting;
        _stop.Dispose();
    }
}
