using Daiko.Tls.Crypto;
using Daiko.Tls.KeySchedule;
using Daiko.Tls.Messages;
using Daiko.Tls.Records;

namespace Daiko.Tls.Handshake;

/// <summary>Builds and sends ClientHello (first, or second after a HelloRetryRequest), PSK binders and 0-RTT data.</summary>
internal static class ClientHelloFlight
{
    public static async ValueTask SendAsync(HandshakeContext c, ServerHello? retry, byte[] random, CancellationToken cancellationToken)
    {
        var o = c.Options;
        var now = o.Time.GetUtcNow();
        var ticket = c.OfferedTicket;
        var tls13 = o.Versions.HasFlag(TlsVersions.Tls13);
        var tls12 = o.Versions.HasFlag(TlsVersions.Tls12);
        if (retry is null)
        {
            ticket = tls13 && o.ResumptionTicket is { Version: TlsVersions.Tls13 } t && !t.IsExpired(now) && t.Fits(o.ServerName, o.CipherSuites) ? t : null;
            c.OfferedTicket = ticket;
            c.ClientRandom = random;
            if (tls12 && o.ResumptionTicket is { Version: TlsVersions.Tls12 } t12 && !t12.IsExpired(now) && t12.Fits(o.ServerName, o.Tls12CipherSuites))
            {
                c.OfferedTls12Ticket = t12;
                c.SessionId = c.Random(32);
            }
        }
        else if (ticket is not null && CipherSuiteInfo.Get(ticket.Suite).Hash != c.Suite!.Hash)
        {
            // The retry chose a suite whose hash does not fit the ticket: offer it no more.
            ticket = c.OfferedTicket = null;
        }

        List<(NamedGroup, byte[])> shares = new();
        var pskOnly = ticket is not null && o.PskModes.Count == 1 && o.PskModes[0] == PskKeyExchangeMode.PskKe;
        // A hello that may only resume carries nothing a full handshake alone would use.
        var resumeOnly = o.ResumeOnly && ticket is not null;
        // Nor TLS 1.2: a TLS 1.2 server would answer with a full handshake (and a card signature) the caller refuses anyway.
        c.OffersTls12 = tls12 && !resumeOnly;
        var groups = resumeOnly && pskOnly ? [] : o.Groups;
        var shareGroup = !tls13 ? null : retry?.KeyShareGroup ?? (pskOnly ? (NamedGroup?)null : o.Groups[0]);
        if (shareGroup is { } g)
        {
            // A retry that names no group (a cookie alone) gets the share it already had (RFC 8446 §4.1.2);
            // one that names a group names one without a share yet (ExpectServerHello saw to that).
            if (!c.KeyShares.TryGetValue(g, out var share))
            {
                share = KeyShare.Create(g, o.FixedKeyShares?.GetValueOrDefault(g));
                c.AddPublicKeyOperation();
                c.KeyShares[g] = share;
            }
            shares.Add((g, share.PublicKey));
        }

        var early = retry is null && ticket is not null && ticket.AllowsEarlyDataWith(o.ApplicationProtocols, o.CipherSuites) && !o.EarlyData.IsEmpty
            && o.EarlyData.Length <= ticket.MaxEarlyData;
        c.OfferedEarlyData = early;
        var ticketSuite = ticket is null ? null : CipherSuiteInfo.Get(ticket.Suite);

        c.OfferedCipherSuites = !tls13 ? [] : resumeOnly ? [ticket!.Suite] : o.CipherSuites;
        var hello = new ClientHello
        {
            Random = random,
            SessionId = c.SessionId,
            CipherSuites = c.OfferedCipherSuites,
            OfferTls13 = tls13,
            Tls12 = c.OffersTls12 ? new Tls12.Tls12Offer(o.Tls12CipherSuites, c.OfferedTls12Ticket?.Identity ?? []) : null,
            ServerName = o.SendServerName ? o.ServerName : null,
            Groups = groups,
            SignatureSchemes = resumeOnly ? [] : SignatureVerifier.Supported,
            KeyShares = shares,
            Alpn = o.ApplicationProtocols,
            PskModes = tls13 ? o.PskModes : [],
            EarlyData = early,
            Cookie = retry?.Cookie,
            PskIdentities = ticket is null ? [] : [new PskIdentity(ticket.Identity, unchecked((uint)(now - ticket.ReceivedAt).TotalMilliseconds + ticket.AgeAdd))],
            BinderLength = ticketSuite?.HashLength ?? 0,
        };
        // What the ClientHello carries: a server may answer only these (RFC 8446 §4.2).
        c.OfferedExtensions = [(ushort)ExtensionType.SupportedVersions, (ushort)ExtensionType.PskKeyExchangeModes, (ushort)ExtensionType.RecordSizeLimit,
                .. groups.Count == 0 ? Array.Empty<ushort>() : [(ushort)ExtensionType.SupportedGroups, (ushort)ExtensionType.KeyShare],
                .. resumeOnly ? Array.Empty<ushort>() : [(ushort)ExtensionType.SignatureAlgorithms],
                .. o.ServerName is null || !o.SendServerName ? Array.Empty<ushort>() : [(ushort)ExtensionType.ServerName],
                .. o.ApplicationProtocols.Count == 0 ? Array.Empty<ushort>() : [(ushort)ExtensionType.ApplicationLayerProtocolNegotiation],
                .. early ? [(ushort)ExtensionType.EarlyData] : Array.Empty<ushort>()];
        var bytes = hello.Encode(out var bindersOffset);
        if (ticket is not null && bindersOffset >= 0)
        {
            c.Early?.Dispose();
            c.Early = new EarlySecret(ticketSuite!, ticket.Psk);
            var binderKey = c.Early.ResumptionBinderKey();
            var hash = c.Transcript.HashWith(ticketSuite!, bytes.AsSpan(0, bindersOffset));
            var binder = Hkdf13.FinishedMac(ticketSuite!, binderKey, hash);
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(binderKey);
            // binders: u16 list length, then u8 binder length and the binder.
            binder.CopyTo(bytes.AsSpan(bindersOffset + 3));
        }
        await c.SendHandshakeAsync(bytes, cancellationToken);

        if (early)
        {
            var secret = c.Early!.ClientEarlyTrafficSecret(c.Transcript.Hash(ticketSuite!));
            o.KeyLog?.Invoke("c e traffic", secret);
            c.EarlyWriter = new RecordProtection(ticketSuite!, secret);
            c.Records.SetWriteProtection(c.EarlyWriter);
            await c.Records.WriteAsync(ContentType.ApplicationData, o.EarlyData, cancellationToken);
        }
    }
}
