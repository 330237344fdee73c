using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Daiko.Home.Hosting;
using Prometheus;

namespace Daiko.Home.Web;

/// <summary>
/// Publishes the home server's meter (<see cref="HomeMetrics"/>, .NET metrics API) as prometheus-net
/// metrics of the same names: counters, the handshake histogram and the gauges, whose labels are the
/// measurement's tags. Unlike prometheus-net's own meter adapter, nothing expires: a counter idle for a
/// day keeps its count. Observable gauges are read just before each scrape and summed over the meters
/// that report them: a hosted node has one per owner it serves (channels open, cards in each state),
/// a home server one; a series no meter reported in a scrape reads 0.
/// </summary>
internal static class MeterBridge
{
    private static readonly Lock Gate = new();
    private static readonly ConcurrentDictionary<Instrument, Collector> Metrics = new();
    private static MeterListener? _listener;

    /// <summary>The observable gauges' sums in the scrape under way (null between scrapes), by collector and label values.</summary>
    private static Dictionary<(Gauge Gauge, string Key), (string[] Values, double Sum)>? _scrape;

    /// <summary>Every observable gauge series set so far, so that one no longer reported goes back to 0.</summary>
    private static readonly Dictionary<(Gauge Gauge, string Key), string[]> GaugeSeries = new();

    public static void StartOnce()
    {
        lock (Gate)
        {
            if (_listener is not null) return;
            Prometheus.Metrics.SuppressDefaultMetrics(new SuppressDefaultMetricOptions { SuppressMeters = true, SuppressEventCounters = true, SuppressDebugMetrics = true });
            var listener = new MeterListener
            {
                InstrumentPublished = (instrument, l) =>
                {
                    if (instrument.Meter.Name.StartsWith(HomeMetrics.MeterName, StringComparison.Ordinal)) l.EnableMeasurementEvents(instrument);
                },
            };
            listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Record(instrument, value, tags));
            listener.SetMeasurementEventCallback<int>((instrument, value, tags, _) => Record(instrument, value, tags));
            listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Record(instrument, value, tags));
            listener.Start();
            Prometheus.Metrics.DefaultRegistry.AddBeforeCollectCallback(() => ReadGauges(listener));
            _listener = listener;
        }
    }

    /// <summary>Reads every observable gauge and sets each series to the sum of what its meters reported (0 when none did).</summary>
    private static void ReadGauges(MeterListener listener)
    {
        lock (Gate)
        {
            _scrape = new();
            try
            {
                listener.RecordObservableInstruments();
                foreach (var (series, (values, _)) in _scrape) GaugeSeries[series] = values;
                foreach (var (series, values) in GaugeSeries) series.Gauge.WithLabels(values).Set(_scrape.TryGetValue(series, out var seen) ? seen.Sum : 0);
            }
            finally
            {
                _scrape = null;
            }
        }
    }

    private static void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var names = new string[tags.Length];
        var values = new string[tags.Length];
        for (var i = 0; i < tags.Length; i++)
        {
            names[i] = tags[i].Key;
            values[i] = tags[i].Value?.ToString() ?? "";
        }
        var collector = Metrics.GetOrAdd(instrument, i => Create(i, names));
        switch (collector)
        {
            case Counter counter:
                counter.WithLabels(values).Inc(value);
                break;
            case Histogram histogram:
                histogram.WithLabels(values).Observe(value);
                break;
            case Gauge gauge when instrument.IsObservable && _scrape is { } scrape:
                var key = (gauge, string.Join('\0', values));
                scrape[key] = (values, (scrape.TryGetValue(key, out var sofar) ? sofar.Sum : 0) + value);
                break;
            case Gauge gauge:
                gauge.WithLabels(values).Set(value);
                break;
        }
    }

    private static Collector Create(Instrument instrument, string[] labels)
    {
        var help = instrument.Description ?? instrument.Name;
        return instrument switch
        {
            Histogram<double> => Prometheus.Metrics.CreateHistogram(instrument.Name, help, labels, new HistogramConfiguration { Buckets = HomeMetrics.HandshakeBuckets }),
            Counter<long> => Prometheus.Metrics.CreateCounter(instrument.Name, help, labels),
            _ => Prometheus.Metrics.CreateGauge(instrument.Name, help, labels),
        };
    }
}
