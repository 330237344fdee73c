using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.Cards.Pins;
using Daiko.Cards.Purse;
using Daiko.Cards.Tokens;
using Daiko.Money;
using Daiko.Tls;

namespace Daiko.Cards.Site;

/// <summary>
/// One owner's home card in a hosted deployment: the owner's keys are objects in the site token
/// (<see cref="SiteToken"/>); PIN1, PIN2 and the admin code are checked against HMAC verifiers made in
/// that token; the counters, the disabled flag and the card's state are the owner's row in the
/// database (<see cref="IOwnerCardRows"/>), counted under its row lock, so any node sees the same card.
/// Signatures are made only while the row says crypto-ready; each device's own unlock session is the
/// home server's business (in the store as well).
/// </summary>
public sealed class HostedCard : IHomeCard
{
    /// <summary>A state not crypto-ready is read again from the database after this long (another node may have unlocked).</summary>
    private static readonly TimeSpan NotReadyFreshness = TimeSpan.FromMilliseconds(200);

    private readonly SiteToken _token;
    private readonly IOwnerCardRows _rows;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private OwnerCardRow _row;
    private DateTimeOffset _readAt;
    private IReadOnlyList<byte[]> _chain;

    public HostedCard(string owner, SiteToken token, IOwnerCardRows rows, TimeProvider? time = null)
    {
        Owner = owner;
        _token = token;
        _rows = rows;
        _time = time ?? TimeProvider.System;
        _row = rows.Read(owner) ?? throw new InvalidOperationException($"no owner named '{owner}' in this deployment");
        _readAt = _time.GetUtcNow();
        _chain = ParseChain(_row.ChainPem);
        TlsSigner = new Signer(this);
    }

    public string Owner { get; }

    public string CardId => Convert.ToHexString(SHA256.HashData(_row.TlsKeyInfo)).ToLowerInvariant();

    public IReadOnlyList<byte[]> CertificateChain => _chain;

    public ITlsSigner TlsSigner { get; }

    public HomeCardState State
    {
        get
        {
            lock (_gate)
            {
                var row = _row;
                if (row.Disabled) return HomeCardState.Disabled;
                if (row.State != HomeCardState.CryptoReady && _time.GetUtcNow() - _readAt >= NotReadyFreshness) row = ReadLocked();
                return row.Disabled ? HomeCardState.Disabled : row.State;
            }
        }
    }

    /// <summary>Makes the verifiers and keys of a new owner's card (Locked).</summary>
    public static OwnerCardRow Provision(SiteToken token, string owner, string pin1, string pin2, string adminCode)
    {
        if (pin1.Length is < 4 or > 64) throw new ArgumentException("PIN1 must be 4 to 64 characters", nameof(pin1));
        if (pin2.Length is < 4 or > 64) throw new ArgumentException("PIN2 must be 4 to 64 characters", nameof(pin2));
        if (adminCode.Length < 8) throw new ArgumentException("the admin code must be at least 8 characters", nameof(adminCode));
        if (string.Equals(pin1, pin2, StringComparison.Ordinal)) throw new ArgumentException("PIN1 and PIN2 must differ", nameof(pin2));
        var (tls, purse) = token.GenerateOwnerKeys(owner);
        return new OwnerCardRow(owner, tls, purse, token.PinVerifier(owner, "pin1", pin1), token.PinVerifier(owner, "pin2", pin2),
            token.PinVerifier(owner, "admin", adminCode), 0, 0, false, HomeCardState.Locked, 0, null);
    }

    public HomeCardStatus GetStatus()
    {
        var row = Read();
        return new HomeCardStatus(row.Disabled ? HomeCardState.Disabled : row.State, CountedPinCheck.TriesLeft(row.Pin1Failures),
            CountedPinCheck.TriesLeft(row.Pin2Failures), HomeCardKeyType.P256, _chain.Count > 0, CardId, null, "site:" + Owner);
    }

    public PinResult EnterPin1(string pin) => Check("PIN1", pin, pin1: true);

    public PinResult EnterPin2(string pin) => Check("PIN2", pin, pin1: false);

    /// <summary>
    /// One counted attempt, decided under the owner's row lock: the HMAC is made and compared and the
    /// counter written in the same transaction, so guesses from every node are counted one at a time.
    /// </summary>
    private PinResult Check(string name, string pin, bool pin1)
    {
        var result = _rows.Update(Owner, row =>
        {
            var failures = pin1 ? row.Pin1Failures : row.Pin2Failures;
            if (row.Disabled) return (row, new PinResult(PinOutcome.Disabled, 0, HomeCardState.Disabled, PinSentences.HomeCardDisabled));
            if (!pin1 && row.State == HomeCardState.Locked)
                return (row, new PinResult(PinOutcome.WrongState, CountedPinCheck.TriesLeft(failures), row.State, "the home card is locked: give PIN1 first"));
            var verifier = _token.PinVerifier(Owner, pin1 ? "pin1" : "pin2", pin);
            if (CryptographicOperations.FixedTimeEquals(verifier, pin1 ? row.Pin1Verifier : row.Pin2Verifier))
            {
                var state = pin1 ? (row.State == HomeCardState.Locked ? HomeCardState.RemoteAccessWait : row.State) : HomeCardState.CryptoReady;
                var accepted = pin1 ? row with { Pin1Failures = 0, State = state } : row with { Pin2Failures = 0, State = state };
                return (accepted, new PinResult(PinOutcome.Accepted, CountedPinCheck.MaxTries, state, pin1 ? "PIN1 accepted" : "the home card is crypto-ready"));
            }
            var now = failures + 1;
            var counted = pin1 ? row with { Pin1Failures = now } : row with { Pin2Failures = now };
            if (now >= CountedPinCheck.MaxTries)
            {
                return (counted with { Disabled = true, State = HomeCardState.Disabled },
                    new PinResult(PinOutcome.Disabled, 0, HomeCardState.Disabled, PinSentences.NowDisabled(name)));
            }
            return (counted, new PinResult(PinOutcome.Wrong, CountedPinCheck.TriesLeft(now), counted.State, PinSentences.Wrong(name, CountedPinCheck.TriesLeft(now))));
        });
        Read();
        return result;
    }

    public void Done() => SetState(HomeCardState.RemoteAccessWait);

    public void Lock() => SetState(HomeCardState.Locked);

    private void SetState(HomeCardState state)
    {
        _rows.Update(Owner, row => (row.Disabled || row.State == HomeCardState.Locked && state != HomeCardState.Locked ? row : row with { State = state }, 0));
        Read();
    }

    /// <summary>Device sessions carry the idle timers in a hosted deployment.</summary>
    public void Touch()
    {
    }

    /// <summary>Reads the row again: true when the card was disabled, unblocked or given a new key since the last look (readiness ends).</summary>
    public bool Refresh()
    {
        lock (_gate)
        {
            var before = _row;
            var after = ReadLocked();
            return after.Disabled != before.Disabled || after.Unblocks != before.Unblocks || !after.TlsKeyInfo.AsSpan().SequenceEqual(before.TlsKeyInfo);
        }
    }

    /// <summary>Wrong admin codes, counted on every node together, after which the owner's card can no longer be unblocked.</summary>
    public const int MaxAdminTries = 10;

    /// <summary>
    /// Unblocks with the admin code (checked against its verifier) and sets new PINs; the card is Locked
    /// after. Wrong admin codes are counted under the owner's row lock like PIN tries (a right one clears
    /// the count); after <see cref="MaxAdminTries"/> the admin code is blocked for good.
    /// </summary>
    public PinResult Unblock(string adminCode, string newPin1, string newPin2)
    {
        if (newPin1.Length is < 4 or > 64 || newPin2.Length is < 4 or > 64) throw new ArgumentException("PINs must be 4 to 64 characters", nameof(newPin1));
        if (string.Equals(newPin1, newPin2, StringComparison.Ordinal)) throw new ArgumentException("PIN1 and PIN2 must differ", nameof(newPin2));
        var admin = _token.PinVerifier(Owner, "admin", adminCode);
        var pin1 = _token.PinVerifier(Owner, "pin1", newPin1);
        var pin2 = _token.PinVerifier(Owner, "pin2", newPin2);
        var result = _rows.Update(Owner, row =>
        {
            if (row.AdminFailures >= MaxAdminTries) return (row, new PinResult(PinOutcome.Disabled, 0, row.State, AdminBlocked));
            if (CryptographicOperations.FixedTimeEquals(admin, row.AdminVerifier))
            {
                return (row with { Pin1Verifier = pin1, Pin2Verifier = pin2, Pin1Failures = 0, Pin2Failures = 0, Disabled = false, State = HomeCardState.Locked, Unblocks = row.Unblocks + 1, AdminFailures = 0 },
                    new PinResult(PinOutcome.Accepted, CountedPinCheck.MaxTries, HomeCardState.Locked, "the home card is unblocked with new PINs"));
            }
            var failures = row.AdminFailures + 1;
            return failures >= MaxAdminTries
                ? (row with { AdminFailures = failures }, new PinResult(PinOutcome.Disabled, 0, row.State, $"wrong admin code: it is now blocked after {MaxAdminTries} wrong entries; {AdminBlockedAdvice}"))
                : (row with { AdminFailures = failures }, new PinResult(PinOutcome.Wrong, MaxAdminTries - failures, row.State,
                    $"wrong admin code: {MaxAdminTries - failures} {(MaxAdminTries - failures == 1 ? "try" : "tries")} left"));
        });
        Read();
        return result;
    }

    private const string AdminBlockedAdvice = "the owner's card can no longer be unblocked (add the owner anew)";

    private static readonly string AdminBlocked = $"the admin code is blocked after {MaxAdminTries} wrong entries; {AdminBlockedAdvice}";

    /// <summary>Checks PIN2 (counted) for an owner command such as a certificate import; throws <see cref="WrongPinException"/> when wrong.</summary>
    public void RequirePin2(string pin2)
    {
        var result = _rows.Update(Owner, row =>
        {
            if (row.Disabled) return (row, new PinResult(PinOutcome.Disabled, 0, HomeCardState.Disabled, PinSentences.HomeCardDisabled));
            var ok = CryptographicOperations.FixedTimeEquals(_token.PinVerifier(Owner, "pin2", pin2), row.Pin2Verifier);
            if (ok) return (row with { Pin2Failures = 0 }, new PinResult(PinOutcome.Accepted, CountedPinCheck.MaxTries, row.State, "PIN2 accepted"));
            var now = row.Pin2Failures + 1;
            return now >= CountedPinCheck.MaxTries
                ? (row with { Pin2Failures = now, Disabled = true, State = HomeCardState.Disabled }, new PinResult(PinOutcome.Disabled, 0, HomeCardState.Disabled, PinSentences.NowDisabled("PIN2")))
                : (row with { Pin2Failures = now }, new PinResult(PinOutcome.Wrong, CountedPinCheck.TriesLeft(now), row.State, PinSentences.Wrong("PIN2", CountedPinCheck.TriesLeft(now))));
        });
        if (result.Outcome == PinOutcome.Disabled) throw new CardDisabledException(result.Message);
        if (!result.Accepted) throw new WrongPinException(result.Message, result.TriesLeft);
    }

    /// <summary>Stores the certificate issued for the owner's TLS key (and its chain) after PIN2; the leaf must carry that key.</summary>
    public void ImportCertificate(byte[] certificateDer, IReadOnlyList<byte[]> chainDer, string pin2)
    {
        using var certificate = X509CertificateLoader.LoadCertificate(certificateDer);
        if (!certificate.PublicKey.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(_row.TlsKeyInfo))
            throw new ArgumentException("the certificate is not for this owner's key (its public key differs)");
        RequirePin2(pin2);
        var pem = string.Concat(new[] { certificateDer }.Concat(chainDer).Select(d => PemEncoding.WriteString("CERTIFICATE", d) + "\n"));
        _rows.Update(Owner, row => (row with { ChainPem = pem }, 0));
        Read();
    }

    /// <summary>A PKCS#10 request for the owner's TLS key, signed in the site token.</summary>
    public byte[] CreateCertificateSigningRequest(string subject) => _token.CreateCertificateSigningRequest(Owner, _row.TlsKeyInfo, subject);

    public IMoneySigner OpenMoneySigner() => new MoneySigner(this);

    public ECDsa PursePublicKey()
    {
        var ec = ECDsa.Create();
        ec.ImportSubjectPublicKeyInfo(_row.PurseKeyInfo, out _);
        return ec;
    }

    public long? ReadPurseCounter()
    {
        RequireReady();
        return _token.ReadPurseCounter(Owner);
    }

    public void AdvancePurseCounter(long value)
    {
        RequireReady();
        _token.WritePurseCounter(Owner, value);
    }

    private void RequireReady()
    {
        var state = State;
        if (state == HomeCardState.Disabled) throw new CardDisabledException(PinSentences.HomeCardDisabled);
        if (state != HomeCardState.CryptoReady) throw new CardNotReadyException("the home card is not crypto-ready");
    }

    private OwnerCardRow Read()
    {
        lock (_gate) return ReadLocked();
    }

    private OwnerCardRow ReadLocked()
    {
        var row = _rows.Read(Owner) ?? throw new InvalidOperationException($"the owner '{Owner}' was removed from this deployment");
        if (!string.Equals(row.ChainPem, _row.ChainPem, StringComparison.Ordinal)) _chain = ParseChain(row.ChainPem);
        _row = row;
        _readAt = _time.GetUtcNow();
        return row;
    }

    private static List<byte[]> ParseChain(string? pem)
    {
        if (pem is null) return [];
        var collection = new X509Certificate2Collection();
        collection.ImportFromPem(pem);
        return collection.Select(c => c.RawData).ToList();
    }

    private sealed class Signer(HostedCard card) : ITlsSigner
    {
        public IReadOnlyList<SignatureScheme> SupportedSchemes { get; } = [SignatureScheme.EcdsaSecp256r1Sha256];

        /// <summary>The key is in the token: the Certificate leaves while the card signs.</summary>
        public bool SignsElsewhere => true;

        public async ValueTask<byte[]> SignAsync(SignatureScheme scheme, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
        {
            if (scheme != SignatureScheme.EcdsaSecp256r1Sha256) throw new NotSupportedException($"the home card cannot sign with {scheme}");
            if (!SignedContent.IsClientCertificateVerify(content.Span) && !SignedContent.IsTls12ClientHandshake(content.Span))
                throw new CryptographicException("the home card's TLS key signs TLS 1.3 client CertificateVerify content or a TLS 1.2 client handshake only");
            card.RequireReady();
            var hash = SHA256.HashData(content.Span);
            return HomeCardTlsSigner.ToDer(await card._token.SignHashAsync(card.Owner, OwnerKey.Tls, hash, card.RequireReady, cancellationToken).ConfigureAwait(false));
        }
    }

    private sealed class MoneySigner(HostedCard card) : IMoneySigner
    {
        public byte[] KeyId { get; } = card._row.PurseKeyInfo;

        public byte[] SignStructure(ReadOnlySpan<byte> toBeSigned)
        {
            if (!SignedContent.IsMoneySigStructure(toBeSigned)) throw new CryptographicException("the purse key signs money messages only");
            card.RequireReady();
            return card._token.SignHash(card.Owner, OwnerKey.Purse, SHA256.HashData(toBeSigned), card.RequireReady);
        }
    }
}
