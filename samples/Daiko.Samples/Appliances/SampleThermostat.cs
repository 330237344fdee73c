using System.Net;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Daiko.Samples.Appliances;

/// <summary>
/// A sample home appliance: a thermostat on the home network speaking HTTP+JSON
/// (<c>GET /state</c>, <c>POST /command</c> with <c>set-target</c>, <c>power-on</c>, <c>power-off</c>).
/// </summary>
public sealed class SampleThermostat : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly object _gate = new();
    private bool _on = true;
    private double _target = 20.0;
    private double _current = 18.5;

    private SampleThermostat(WebApplication app) => _app = app;

    public Uri Endpoint { get; private set; } = null!;

    public static async Task<SampleThermostat> StartAsync(IPAddress address, int port = 0)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(address, port));
        var app = builder.Build();
        var thermostat = new SampleThermostat(app);
        app.MapGet("/state", () => Results.Text(thermostat.State(), "application/json"));
        app.MapPost("/command", async (HttpContext context) =>
        {
            var body = await JsonNode.ParseAsync(context.Request.Body);
            var command = body?["command"]?.GetValue<string>();
            var arguments = body?["arguments"] as JsonObject;
            var error = thermostat.Apply(command, arguments);
            return error is null ? Results.Text(thermostat.State(), "application/json") : Results.BadRequest(error);
        });
        await app.StartAsync();
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        thermostat.Endpoint = new Uri(bound.TrimEnd('/') + "/");
        return thermostat;
    }

    private string? Apply(string? command, JsonObject? arguments)
    {
        lock (_gate)
        {
            switch (command)
            {
                case "power-on": _on = true; return null;
                case "power-off": _on = false; return null;
                case "set-target":
                    var value = arguments?["celsius"]?.GetValue<string>();
                    if (!double.TryParse(value, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var celsius) || celsius is < 5 or > 30)
                        return "set-target needs celsius between 5 and 30";
                    _target = celsius;
                    return null;
                default:
                    return $"unknown command '{command}'";
            }
        }
    }

    private string State()
    {
        lock (_gate)
        {
            if (_on) _current += (_target - _current) * 0.25;
            return new JsonObject { ["power"] = _on ? "on" : "off", ["target_celsius"] = _target, ["current_celsius"] = Math.Round(_current, 2) }.ToJsonString();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
