using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Daiko.Home.Hosting;
using Prometheus;

namespace Daiko.Home.Web;

/// <summary>
/// Publishes the home server's meter (<see cref="HomeMetrics"/>, .NET metrics API) as prometheus-net
/// metrics of the same names: counters, the handshake histogram and the gauges, whose labels are the
/// measurement's tags. Unlike prometheus-net's own meter adapter, nothing expires: a counter idle for a
/// day keeps its count. Observable gauges are read just before each scrape.
/// </summary>
internal static class MeterBridge
{
    private static readonly Lock Gate = new();
    private static readonly ConcurrentDictionary<Instrument, Collector> Metrics = new();
    private static MeterListener? _listener;

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
            Prometheus.Metrics.DefaultRegistry.AddBeforeCollectCallback(listener.RecordObservableInstruments);
            _listener = listener;
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
