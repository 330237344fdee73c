using System.Net;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Daiko.Samples.Market;

/// <summary>
/// A sample market: Kestrel with TLS 1.3 and mutual authentication (client certificates from
/// <paramref name="clientRoot"/> required), answering <c>GET /whoami</c> with the client's subject.
/// Extra routes can be mapped by the caller before it starts.
/// </summary>
public sealed class SampleMarket : IAsyncDisposable
{
    private readonly WebApplication _app;

    private SampleMarket(WebApplication app, Uri url)
    {
        _app = app;
        Url = url;
    }

    public Uri Url { get; }

    public int Port => Url.Port;

    public static async Task<SampleMarket> StartAsync(X509Certificate2 serverCertificate, X509Certificate2 clientRoot, IPAddress address, int port = 0, Action<WebApplication>? routes = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(address, port, listen => listen.UseHttps(https =>
        {
            https.ServerCertificate = serverCertificate;
            https.SslProtocols = SslProtocols.Tls13;
            https.ClientCertificateMode = ClientCertificateMode.RequireCertificate;
            https.ClientCertificateValidation = (certificate, _, _) =>
            {
                using var chain = new X509Chain();
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.Add(clientRoot);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return chain.Build(certificate);
            };
        })));
        var app = builder.Build();
        app.MapGet("/whoami", (HttpContext context) => $"subject={context.Connection.ClientCertificate?.Subject}\n");
        app.MapGet("/", () => "Daiko sample market\n");
        routes?.Invoke(app);
        await app.StartAsync();
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new SampleMarket(app, new Uri(bound.Replace("127.0.0.1", "localhost", StringComparison.Ordinal)));
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
