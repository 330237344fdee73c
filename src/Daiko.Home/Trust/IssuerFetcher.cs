using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Home.Policy;
using Daiko.Tls;
using Microsoft.Extensions.Logging;

namespace Daiko.Home.Trust;

/// <summary>
/// <c>home serve --fetch-missing-intermediates</c>: fetches the intermediate a market left out of its
/// chain, by its certificate's http AIA URL, and nothing else. The name is resolved here and only a
/// public address is dialled (a private, loopback or link-local one only with
/// <c>--allow-private-markets</c>), so a certificate cannot point the home server into the owner's
/// network; no redirects, no proxy; at most <see cref="Timeout"/> and <see cref="MaxBytes"/>; a
/// DER or PEM certificate or nothing. Answers, good or bad, are cached by URL (at most
/// <see cref="MaxCached"/>), and every fetch or refusal is logged.
/// </summary>
public sealed partial class IssuerFetcher : IIssuerFetcher, IDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(2);
    public const int MaxBytes = 64 * 1024;
    public const int MaxCached = 256;
    private static readonly TimeSpan Fresh = TimeSpan.FromHours(1), FailureFresh = TimeSpan.FromMinutes(5);

    private readonly ConcurrentDictionary<string, (byte[]? Certificate, DateTimeOffset Until)> _cache = new(StringComparer.Ordinal);
    private readonly HttpClient _http;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly bool _allowPrivate;

    public IssuerFetcher(ILogger logger, bool allowPrivate = false, TimeProvider? time = null)
    {
        _logger = logger;
        _allowPrivate = allowPrivate;
        _time = time ?? TimeProvider.System;
        _http = new HttpClient(new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            UseProxy = false,
            UseCookies = false,
            ConnectCallback = ConnectAsync,
            MaxResponseHeadersLength = 16,
        })
        { Timeout = System.Threading.Timeout.InfiniteTimeSpan };
    }

    public async ValueTask<byte[]?> FetchAsync(Uri url, CancellationToken cancellationToken)
    {
        var key = url.AbsoluteUri;
        var now = _time.GetUtcNow();
        if (_cache.TryGetValue(key, out var cached) && cached.Until > now) return cached.Certificate;
        byte[]? certificate = null;
        try
        {
            certificate = await DownloadAsync(url, cancellationToken).ConfigureAwait(false);
            using var parsed = X509CertificateLoader.LoadCertificate(certificate);
            LogFetched(_logger, parsed.Subject, url.AbsoluteUri, certificate.Length);
        }
        catch (Exception e) when (e is HttpRequestException or IOException or OperationCanceledException or CryptographicException or InvalidDataException)
        {
            if (cancellationToken.IsCancellationRequested) throw;
            certificate = null;
            LogNotFetched(_logger, url.AbsoluteUri, e is OperationCanceledException ? $"no answer within {Timeout.TotalSeconds:0} s" : (e.InnerException ?? e).Message);
        }
        if (_cache.Count >= MaxCached)
        {
            foreach (var stale in _cache.Where(p => p.Value.Until <= now).Select(p => p.Key).ToList()) _cache.TryRemove(stale, out _);
            if (_cache.Count >= MaxCached) _cache.Clear();
        }
        _cache[key] = (certificate, now + (certificate is null ? FailureFresh : Fresh));
        return certificate;
    }

    private async Task<byte[]> DownloadAsync(Uri url, CancellationToken cancellationToken)
    {
        if (url.Scheme != Uri.UriSchemeHttp) throw new InvalidDataException("only http issuer URLs are fetched");
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(Timeout);
        using var response = await _http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, deadline.Token).ConfigureAwait(false);
        if (response.StatusCode != HttpStatusCode.OK) throw new InvalidDataException($"the server answered {(int)response.StatusCode}");
        if (response.Content.Headers.ContentLength > MaxBytes) throw new InvalidDataException($"the answer is over {MaxBytes / 1024} KiB");
        await using var body = await response.Content.ReadAsStreamAsync(deadline.Token).ConfigureAwait(false);
        var buffer = new byte[MaxBytes + 1];
        var length = 0;
        int read;
        while (length < buffer.Length && (read = await body.ReadAsync(buffer.AsMemory(length), deadline.Token).ConfigureAwait(false)) > 0) length += read;
        if (length > MaxBytes) throw new InvalidDataException($"the answer is over {MaxBytes / 1024} KiB");
        var bytes = buffer.AsSpan(0, length);
        if (bytes.StartsWith("-----BEGIN"u8))
        {
            using var pem = X509Certificate2.CreateFromPem(System.Text.Encoding.ASCII.GetString(bytes));
            return pem.RawData;
        }
        return bytes.ToArray();
    }

    /// <summary>Resolves the name and dials only an address the home server may reach (checked on the address dialled: no DNS rebinding).</summary>
    private async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var host = context.DnsEndPoint.Host;
        var addresses = await Policy.HostLookup.System.AddressesAsync(host, cancellationToken).ConfigureAwait(false);
        var allowed = addresses.Where(a => _allowPrivate || !PrivateAddresses.IsPrivate(a)).ToList();
        if (allowed.Count == 0) throw new IOException($"{host} resolves to a private address: issuers are fetched only from public ones");
        var socket = new Socket(allowed[0].AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(allowed[0], context.DnsEndPoint.Port, cancellationToken).ConfigureAwait(false);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public void Dispose() => _http.Dispose();

    [LoggerMessage(61, LogLevel.Information, "fetched the missing intermediate {Subject} from {Url} ({Bytes} bytes)")]
    private static partial void LogFetched(ILogger logger, string subject, string url, int bytes);

    [LoggerMessage(62, LogLevel.Warning, "did not fetch the intermediate at {Url}: {Reason}")]
    private static partial void LogNotFetched(ILogger logger, string url, string reason);
}
