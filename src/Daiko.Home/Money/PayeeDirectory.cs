using System.Security.Cryptography;
using Daiko.Home.Storage;
using Microsoft.Extensions.Logging;

namespace Daiko.Home.Money;

/// <summary>
/// The payees a running home server knows: those the owner declared in the home store (with their
/// role), and the keys of older homes in DIR/payees/NAME.pem, which count as markets (a bank must be
/// declared with its role). Re-read every <c>poll</c> while the server runs, so that
/// <c>daiko home payee add|remove</c> applies without a restart; says in the log while no bank is
/// declared (refills are refused until one is).
/// </summary>
public sealed class PayeeDirectory
{
    private readonly string _directory;
    private readonly IPayeeStore _store;
    private readonly ILogger _logger;
    private volatile IReadOnlyDictionary<string, (PayeeRole Role, string Pem)> _payees = new Dictionary<string, (PayeeRole, string)>();
    private bool? _hadBank;

    public PayeeDirectory(string directory, IPayeeStore store, ILogger logger)
    {
        _directory = directory;
        _store = store;
        _logger = logger;
    }

    /// <summary>Declares a market or bank and its verification key in the home store of DIR (what <c>daiko home payee add</c> does).</summary>
    public static async Task AddAsync(string directory, string name, PayeeRole role, ECDsa publicKey, CancellationToken cancellationToken = default)
    {
        if (!IsName(name)) throw new ArgumentException("a payee's name uses letters, digits, dots and dashes (it is the id in its money messages)", nameof(name));
        await new SqlPayeeStore(HomeStore.ForHome(directory))
            .AddAsync(new Payee(name, role, publicKey.ExportSubjectPublicKeyInfoPem(), DateTimeOffset.UtcNow), cancellationToken);
    }

    /// <summary>The key a payee signs with in <paramref name="role"/>; null when no payee of that name has that role.</summary>
    public ECDsa? KeyOf(string name, PayeeRole role)
    {
        if (!_payees.TryGetValue(name, out var payee) || payee.Role != role) return null;
        var key = ECDsa.Create();
        try
        {
            key.ImportFromPem(payee.Pem);
            return key;
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            key.Dispose();
            _logger.PayeeKeyUnreadable(name);
            return null;
        }
    }

    /// <summary>Reads the payees again (from the store and DIR/payees/) and logs when the first bank is declared or the last one removed.</summary>
    public async Task RefreshAsync(CancellationToken cancellationToken)
    {
        var payees = new Dictionary<string, (PayeeRole, string)>(StringComparer.Ordinal);
        foreach (var (name, pem) in LegacyFiles(_directory)) payees[name] = (PayeeRole.Market, pem);
        foreach (var payee in await _store.ListAsync(cancellationToken)) payees[payee.Name] = (payee.Role, payee.PublicKeyPem);
        _payees = payees;
        var banks = payees.Where(p => p.Value.Item1 == PayeeRole.Bank).Select(p => p.Key).ToList();
        if (_hadBank == banks.Count > 0) return;
        if (banks.Count == 0) _logger.NoBankDeclared(_directory);
        else if (_hadBank is not null) _logger.BankDeclared(string.Join(", ", banks));
        _hadBank = banks.Count > 0;
    }

    /// <summary>Re-reads the payees every <paramref name="poll"/> until cancelled (a failed read keeps the last good list).</summary>
    public Task RunAsync(TimeSpan poll, TimeProvider time, CancellationToken cancellationToken) =>
        new Hosting.BackgroundLook("reading the payees", RefreshAsync, e => e is System.Data.Common.DbException or IOException or CryptographicException, time, _logger)
            .RunAsync(poll, cancellationToken);

    /// <summary>The keys of DIR/payees/NAME.pem (how payees were kept before roles): markets.</summary>
    public static IEnumerable<(string Name, string Pem)> LegacyFiles(string directory)
    {
        var folder = Path.Combine(directory, "payees");
        if (!Directory.Exists(folder)) yield break;
        foreach (var file in Directory.EnumerateFiles(folder, "*.pem").Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileNameWithoutExtension(file);
            if (IsName(name)) yield return (name, File.ReadAllText(file));
        }
    }

    /// <summary>A payee's name (the id in its money messages): letters, digits, dots and dashes.</summary>
    public static bool IsName(string name) => name.Length is > 0 and <= 253 && name.All(ch => char.IsAsciiLetterOrDigit(ch) || ch is '.' or '-');
}

internal static partial class PayeeLog
{
    [LoggerMessage(40, LogLevel.Warning, "no bank is declared: refills are refused until the owner declares one with 'daiko home payee add --home {Directory} --name NAME --role bank --key PEM' (keys in payees/ count as markets)")]
    public static partial void NoBankDeclared(this ILogger logger, string directory);

    [LoggerMessage(41, LogLevel.Information, "bank declared: refills signed by {Banks} are accepted")]
    public static partial void BankDeclared(this ILogger logger, string banks);

    [LoggerMessage(42, LogLevel.Warning, "the key of payee '{Name}' is not an EC public key in PEM: its messages are refused")]
    public static partial void PayeeKeyUnreadable(this ILogger logger, string name);
}
