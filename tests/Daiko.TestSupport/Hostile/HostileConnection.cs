using System.Net.Sockets;
using System.Text;

namespace Daiko.TestSupport.Hostile;

/// <summary>
/// One accepted connection of the hostile peer: raw records in both directions, protected or not,
/// with the primitives a misbehaving market needs (tickets, KeyUpdates, forged alerts, bare closes).
/// </summary>
public sealed class HostileConnection : IDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly List<byte> _handshake = new();
    private readonly List<byte> _appData = new();
    internal PeerCipher? Read;
    internal PeerCipher? Write;

    private readonly long _acceptedAt;

    internal HostileConnection(Socket socket, long acceptedAt)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        _acceptedAt = acceptedAt;
    }

    /// <summary>The time since the market accepted the connection: about when the client's handshake, and its timeout, began.</summary>
    public TimeSpan SinceAccepted => System.Diagnostics.Stopwatch.GetElapsedTime(_acceptedAt);

    /// <summary>The last alert the client sent (description byte), if any.</summary>
    public byte? ClientAlert { get; private set; }

    /// <summary>The client closed its side of TCP.</summary>
    public bool ClientClosed { get; private set; }

    /// <summary>KeyUpdates the client sent after the handshake.</summary>
    public int ClientKeyUpdates { get; private set; }

    /// <summary>The largest protected record the client sent, as the length of its inner plaintext (content, type byte, padding).</summary>
    public int LargestClientInnerPlaintext { get; private set; }

    public async Task SendRawAsync(byte[] bytes)
    {
        await _stream.WriteAsync(bytes);
        await _stream.FlushAsync();
    }

    /// <summary>A protected record of <paramref name="innerType"/> under the current write key.</summary>
    public Task SendRecordAsync(byte innerType, byte[] content, int padding = 0) => SendRawAsync(Write!.Seal(innerType, content, padding));

    /// <summary>Application data, cut into records of at most <paramref name="recordSize"/> bytes.</summary>
    public async Task SendAsync(byte[] data, int recordSize = 16384)
    {
        for (var p = 0; p < data.Length; p += recordSize)
        {
            await SendRecordAsync(23, data[p..Math.Min(data.Length, p + recordSize)]);
        }
    }

    public Task SendAsync(string text) => SendAsync(Encoding.ASCII.GetBytes(text));

    /// <summary>A plaintext record, whatever the keys in force (a forgery by anyone on the path).</summary>
    public Task SendPlainRecordAsync(byte type, byte[] content) =>
        SendRawAsync([type, 3, 3, (byte)(content.Length >> 8), (byte)content.Length, .. content]);

    public static byte[] HandshakeMessage(byte type, byte[] body) =>
        [type, (byte)(body.Length >> 16), (byte)(body.Length >> 8), (byte)body.Length, .. body];

    /// <summary>A NewSessionTicket of <paramref name="ticketBytes"/> random bytes.</summary>
    public static byte[] NewSessionTicket(int ticketBytes, uint lifetime = 3600, byte[]? extensions = null)
    {
        var ticket = new byte[ticketBytes];
        Random.Shared.NextBytes(ticket);
        extensions ??= [];
        byte[] body =
        [
            (byte)(lifetime >> 24), (byte)(lifetime >> 16), (byte)(lifetime >> 8), (byte)lifetime,
            1, 2, 3, 4, 1, 0, (byte)(ticketBytes >> 8), (byte)ticketBytes, .. ticket,
            (byte)(extensions.Length >> 8), (byte)extensions.Length, .. extensions,
        ];
        return HandshakeMessage(4, body);
    }

    public Task SendTicketAsync(int ticketBytes, byte[]? extensions = null) => SendHandshakeAsync(NewSessionTicket(ticketBytes, extensions: extensions));

    /// <summary>A handshake message, split over records of at most 16 KiB.</summary>
    public async Task SendHandshakeAsync(byte[] message)
    {
        for (var p = 0; p < message.Length; p += 16384) await SendRecordAsync(22, message[p..Math.Min(message.Length, p + 16384)]);
    }

    /// <summary>Sends KeyUpdate and moves to the next write key.</summary>
    public async Task SendKeyUpdateAsync(bool requestUpdate)
    {
        await SendRecordAsync(22, HandshakeMessage(24, [requestUpdate ? (byte)1 : (byte)0]));
        var next = new PeerCipher(Tls13Keys.NextGeneration(Write!.Secret));
        Write.Dispose();
        Write = next;
    }

    public Task SendCloseNotifyAsync() => SendRecordAsync(21, [1, 0]);

    /// <summary>Ends TCP (FIN) without close_notify.</summary>
    public void CloseWithoutCloseNotify() => _socket.Shutdown(SocketShutdown.Send);

    /// <summary>Reads the client's application data up to the end of an HTTP request head.</summary>
    public async Task<string> ReadRequestAsync()
    {
        while (true)
        {
            var text = Encoding.ASCII.GetString(_appData.ToArray());
            var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end >= 0)
            {
                _appData.RemoveRange(0, end + 4);
                return text[..(end + 4)];
            }
            var record = await ReadRecordAsync() ?? throw new IOException("the client closed before sending a request");
            Absorb(record);
        }
    }

    /// <summary>Reads what the client sends until it alerts or closes (or time runs out); returns its alert.</summary>
    public async Task<byte?> WaitForClientAlertAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (ClientAlert is null && !ClientClosed)
            {
                var record = await ReadRecordAsync(cts.Token);
                if (record is null) break;
                Absorb(record.Value);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or System.Security.Cryptography.CryptographicException)
        {
            // Whatever arrived so far is the answer.
        }
        return ClientAlert;
    }

    private void Absorb((byte Type, byte[] Content) record)
    {
        switch (record.Type)
        {
            case 23:
                _appData.AddRange(record.Content);
                break;
            case 22:
                _handshake.AddRange(record.Content);
                while (TryTakeHandshake(out var message))
                {
                    if (message[0] == 24)
                    {
                        ClientKeyUpdates++;
                        var next = new PeerCipher(Tls13Keys.NextGeneration(Read!.Secret));
                        Read.Dispose();
                        Read = next;
                    }
                }
                break;
        }
    }

    /// <summary>Reads one complete handshake message (header included), during the handshake.</summary>
    internal async Task<byte[]> ReadHandshakeAsync()
    {
        while (true)
        {
            if (TryTakeHandshake(out var message)) return message;
            var record = await ReadRecordAsync() ?? throw new IOException("the client closed during the handshake");
            if (record.Type == 22) _handshake.AddRange(record.Content);
            else if (record.Type != 20) throw new IOException($"record type {record.Type} during the handshake");
        }
    }

    private bool TryTakeHandshake(out byte[] message)
    {
        message = [];
        if (_handshake.Count < 4) return false;
        var length = (_handshake[1] << 16) | (_handshake[2] << 8) | _handshake[3];
        if (_handshake.Count < 4 + length) return false;
        message = _handshake.GetRange(0, 4 + length).ToArray();
        _handshake.RemoveRange(0, 4 + length);
        return true;
    }

    /// <summary>The next record (decrypted when it is protected); alerts are recorded. Null at the end of TCP.</summary>
    internal async Task<(byte Type, byte[] Content)?> ReadRecordAsync(CancellationToken cancellationToken = default)
    {
        var header = new byte[5];
        if (!await FillAsync(header, cancellationToken)) return null;
        var body = new byte[(header[3] << 8) | header[4]];
        if (!await FillAsync(body, cancellationToken)) return null;
        var record = header[0] == 23 && Read is not null ? Read.Open(header, body) : (header[0], body);
        // AEAD tag of 16 bytes: what remains is TLSInnerPlaintext.
        if (header[0] == 23 && Read is not null) LargestClientInnerPlaintext = Math.Max(LargestClientInnerPlaintext, body.Length - 16);
        if (record.Item1 == 21 && record.Item2.Length == 2) ClientAlert = record.Item2[1];
        return record;
    }

    private async Task<bool> FillAsync(byte[] buffer, CancellationToken cancellationToken)
    {
        for (var p = 0; p < buffer.Length;)
        {
            var n = await _stream.ReadAsync(buffer.AsMemory(p), cancellationToken);
            if (n == 0)
            {
                ClientClosed = true;
                return false;
            }
            p += n;
        }
        return true;
    }

    public void Dispose()
    {
        Read?.Dispose();
        Write?.Dispose();
        _stream.Dispose();
    }
}
