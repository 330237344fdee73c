using System.Net;
using System.Net.Sockets;
using System.Text;
using Daiko.Terminal.Forwarding;
using Xunit;

namespace Daiko.Terminal.Tests;

public sealed class LocalForwarderTests
{
    [Fact]
    public async Task Forwarder_PumpsBytesBothWaysThroughTheSessionItOpens()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var echo = new TcpListener(IPAddress.Loopback, 0);
        echo.Start();
        var echoTask = Task.Run(async () =>
        {
            using var s = await echo.AcceptTcpClientAsync(cts.Token);
            var stream = s.GetStream();
            var buffer = new byte[5];
            await stream.ReadExactlyAsync(buffer, cts.Token);
            await stream.WriteAsync(Encoding.ASCII.GetBytes(Encoding.ASCII.GetString(buffer).ToUpperInvariant()), cts.Token);
        });
        var opened = 0;
        await using var forwarder = LocalForwarder.Start(new IPEndPoint(IPAddress.Loopback, 0), async ct =>
        {
            Interlocked.Increment(ref opened);
            var client = new TcpClient();
            await client.ConnectAsync((IPEndPoint)echo.LocalEndpoint, ct);
            return client.GetStream();
        });

        using var app = new TcpClient();
        await app.ConnectAsync(forwarder.LocalEndPoint, cts.Token);
        await app.GetStream().WriteAsync("hello"u8.ToArray(), cts.Token);
        var reply = new byte[5];
        await app.GetStream().ReadExactlyAsync(reply, cts.Token);

        Assert.Equal("HELLO", Encoding.ASCII.GetString(reply));
        Assert.Equal(1, opened);
        await echoTask;
        echo.Stop();
    }

    [Fact]
    public async Task Forwarder_WhenTheSessionCannotBeOpened_ClosesTheLocalConnectionAndKeepsServing()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var messages = new List<string>();
        await using var forwarder = LocalForwarder.Start(new IPEndPoint(IPAddress.Loopback, 0),
            _ => throw new InvalidOperationException("home server unreachable"), new ListLogger(messages));

        for (var i = 0; i < 2; i++)
        {
            using var app = new TcpClient();
            await app.ConnectAsync(forwarder.LocalEndPoint, cts.Token);
            var n = await app.GetStream().ReadAsync(new byte[1], cts.Token);
            Assert.Equal(0, n);
        }
        Assert.Equal(2, forwarder.ConnectionsFailed);
        // Each refused connection is logged before the local socket closes: one message per connection.
        lock (messages) Assert.Equal(2, messages.Count(m => m.Contains("home server unreachable", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task AConnectionFromAnotherLocalUser_IsClosedBeforeAnySessionIsAskedFor_AndThisUsersIsServed()
    {
        // Linux's /proc/net/tcp and setpriv; run as root, as the suite is, to connect as another user (nobody).
        if (!OperatingSystem.IsLinux()) return;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var messages = new List<string>();
        var opened = 0;
        await using var forwarder = LocalForwarder.Start(new IPEndPoint(IPAddress.Loopback, 0), _ =>
        {
            Interlocked.Increment(ref opened);
            return Task.FromResult<Stream>(new MemoryStream("served"u8.ToArray()));
        }, new ListLogger(messages));

        var asNobody = new System.Diagnostics.ProcessStartInfo("setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c", $"exec 3<>/dev/tcp/127.0.0.1/{forwarder.LocalEndPoint.Port}; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"])
        { RedirectStandardOutput = true, RedirectStandardError = true };
        using (var nobody = System.Diagnostics.Process.Start(asNobody)!)
        {
            var output = await nobody.StandardOutput.ReadToEndAsync(cts.Token);
            await nobody.WaitForExitAsync(cts.Token);
            Assert.Equal("", output);
        }

        Assert.Equal(0, Volatile.Read(ref opened));
        Assert.Equal(1, forwarder.ConnectionsRefused);
        lock (messages) Assert.Contains(messages, m => m.Contains("belongs to local user 65534; only this user", StringComparison.Ordinal));

        using var app = new TcpClient();
        await app.ConnectAsync(forwarder.LocalEndPoint, cts.Token);
        using var reader = new StreamReader(app.GetStream());
        Assert.Equal("served", await reader.ReadToEndAsync(cts.Token));
        Assert.Equal(1, Volatile.Read(ref opened));
    }

    [Fact]
    public async Task ConnectionsPastTheMostServedAtOnce_AreClosedUnserved_WhileTheOthersWait()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var release = new TaskCompletionSource();
        var opened = 0;
        await using var forwarder = LocalForwarder.Start(new IPEndPoint(IPAddress.Loopback, 0), async ct =>
        {
            Interlocked.Increment(ref opened);
            await release.Task.WaitAsync(ct);
            return new MemoryStream();
        });
        var held = new List<TcpClient>();
        try
        {
            for (var i = 0; i < LocalForwarder.MaxOpen; i++)
            {
                var client = new TcpClient();
                held.Add(client);
                await client.ConnectAsync(forwarder.LocalEndPoint, cts.Token);
            }
            while (Volatile.Read(ref opened) < LocalForwarder.MaxOpen) await Task.Delay(10, cts.Token);

            Assert.True(await ClosedUnservedAsync(forwarder.LocalEndPoint, cts.Token));
            Assert.Equal(1, forwarder.ConnectionsRefused);
            Assert.Equal(LocalForwarder.MaxOpen, Volatile.Read(ref opened));
        }
        finally
        {
            release.TrySetResult();
            foreach (var client in held) client.Dispose();
        }
    }

    [Fact]
    public void ANonLoopbackAddress_IsRefusedBeforeAnythingListens_UnlessOthersAreAllowed()
    {
        var refused = Assert.Throws<ArgumentException>(() => LocalForwarder.Start(new IPEndPoint(IPAddress.Any, 0), _ => Task.FromResult<Stream>(new MemoryStream())));
        Assert.Contains("is not a loopback address", refused.Message, StringComparison.Ordinal);
        Assert.Contains("--allow-others", refused.Message, StringComparison.Ordinal);
    }

    /// <summary>Whether a connection to <paramref name="endPoint"/> is ended at once (reset, even as its connect completes, or closed).</summary>
    private static async Task<bool> ClosedUnservedAsync(IPEndPoint endPoint, CancellationToken ct)
    {
        using var client = new TcpClient();
        try
        {
            await client.ConnectAsync(endPoint, ct);
            return await client.GetStream().ReadAsync(new byte[1], ct) == 0;
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            return true;
        }
    }
}

/// <summary>Collects formatted log lines (a fake logger inside this unit test of one class).</summary>
internal sealed class ListLogger(List<string> lines) : Microsoft.Extensions.Logging.ILogger
{
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

    public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (lines) lines.Add(formatter(state, exception));
    }
}
