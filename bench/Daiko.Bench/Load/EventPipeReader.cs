using Microsoft.Diagnostics.NETCore.Client;
using Microsoft.Diagnostics.Tracing;

namespace Daiko.Bench.Load;

/// <summary>
/// An event session with another .NET process over its diagnostics port: the events of
/// <paramref name="providers"/> go to the handlers <paramref name="subscribe"/> attaches, on a reading
/// task of their own, until disposal stops the session.
/// </summary>
public sealed class EventPipeReader(int pid, IReadOnlyList<EventPipeProvider> providers, Action<EventPipeEventSource> subscribe, string what) : IAsyncDisposable
{
    private readonly EventPipeSession _session = new DiagnosticsClient(pid).StartEventPipeSession(providers, requestRundown: false);
    private Task? _reading;

    /// <summary>Starts reading (once the session is open).</summary>
    public EventPipeReader Start()
    {
        _reading = Task.Run(() =>
        {
            using var source = new EventPipeEventSource(_session.EventStream);
            subscribe(source);
            source.Process();
        });
        return this;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await _session.StopAsync(CancellationToken.None);
        }
        catch (Exception e) when (e is ServerNotAvailableException or IOException or TimeoutException or EndOfStreamException)
        {
            Console.WriteLine($"{what}: the session with the home server ended on its own ({e.Message})");
        }
        if (_reading is not null) await _reading.WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _session.Dispose();
    }
}
