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

namespace Daiko.TestSupport;

/// <summary>A Kestrel (SslStream) HTTPS server on 127.0.0.1 that requires a client certificate from the test CA.</summary>
public sealed class KestrelServer : ITlsPeer
{
    private readonly WebApplication _app;

    private KestrelServer(WebApplication app, int port)
    {
        _app = app;
        Port = port;
    }

    public string Name => "kestrel";

    public string Host => "localhost";

    public int Port { get; }

    public bool AllowsPskKe => false;

    public string IdentityPath => "/whoami";

    public string Log => "";

    /// <param name="routes">Further routes, mapped before the server starts (a test's market or bank).</param>
    public static async Task<KestrelServer> StartAsync(TestPki pki, TlsPeerOptions? options = null, Action<WebApplication>? routes = null)
    {
        options ??= new TlsPeerOptions();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Loopback, 0, listen => listen.UseHttps(https =>
            {
                https.ServerCertificate = pki.Server.Certificate;
                https.SslProtocols = SslProtocols.Tls13;
                https.ClientCertificateMode = options.RequireClientCertificate ? ClientCertificateMode.RequireCertificate : ClientCertificateMode.AllowCertificate;
                https.ClientCertificateValidation = (certificate, _, _) => ChainsTo(certificate, pki.Root);
            }));
        });
        var app = builder.Build();
        app.MapGet("/whoami", (HttpContext context) =>
            $"subject={context.Connection.ClientCertificate?.Subject}\n");
        app.MapGet("/", () => "hello from kestrel\n");
        routes?.Invoke(app);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new KestrelServer(app, new Uri(address).Port);
    }

    private static bool ChainsTo(X509Certificate2 certificate, X509Certificate2 root)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(root);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(certificate);
    }

    public void Dispose()
    {
        _app.StopAsync().GetAwaiter().GetResult();
        ((IDisposable)_app).Dispose();
    }
}
