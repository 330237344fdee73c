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
