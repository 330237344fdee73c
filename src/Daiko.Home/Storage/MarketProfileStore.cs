using System.Data.Common;
using System.Globalization;
using Daiko.Home.Delegation;

namespace Daiko.Home.Storage;

/// <summary>What the home server learned about each market (the basis of auto mode), kept in the home store.</summary>
public interface IMarketProfileStore
{
    Task<MarketProfile?> FindAsync(string host, int port, CancellationToken cancellationToken = default);

    Task RememberAsync(MarketProfile profile, CancellationToken cancellationToken = default);
}

/// <summary>
/// Market profiles on any <see cref="IHomeStore"/> (SQLite or PostgreSQL): one table, the same SQL on
/// both (named @parameters, an ON CONFLICT upsert, types both accept), created on first use.
/// </summary>
public sealed class SqlMarketProfileStore(IHomeStore store) : IMarketProfileStore
{
    private const string Schema = """
        CREATE TABLE IF NOT EXISTS market_profiles (
            host TEXT NOT NULL, port INTEGER NOT NULL, tls13 INTEGER NOT NULL, tickets INTEGER NOT NULL,
            psk_ke INTEGER NOT NULL, max_early_data BIGINT NOT NULL, learned_at TEXT NOT NULL,
            PRIMARY KEY (host, port))
        """;

    private readonly StoreTable _table = new(store, Schema);

    private Task<DbConnection> OpenAsync(CancellationToken cancellationToken) => _table.OpenAsync(cancellationToken);

    public async Task<MarketProfile?> FindAsync(string host, int port, CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT host, port, tls13, tickets, psk_ke, max_early_data, learned_at FROM market_profiles WHERE host = @h AND port = @p";
        Add(command, "@h", host);
        Add(command, "@p", port);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken)) return null;
        long Number(int i) => Convert.ToInt64(reader.GetValue(i), CultureInfo.InvariantCulture);
        return new MarketProfile(reader.GetString(0), (int)Number(1), Number(2) != 0, Number(3) != 0, Number(4) != 0, (uint)Number(5),
            DateTimeOffset.Parse(reader.GetString(6), CultureInfo.InvariantCulture));
    }

    public async Task RememberAsync(MarketProfile profile, CancellationToken cancellationToken = default)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO market_profiles(host, port, tls13, tickets, psk_ke, max_early_data, learned_at)
            VALUES (@h, @p, @t, @k, @e, @m, @at)
            ON CONFLICT(host, port) DO UPDATE SET tls13 = @t, tickets = @k, psk_ke = @e, max_early_data = @m, learned_at = @at
            """;
        Add(command, "@h", profile.Host);
        Add(command, "@p", profile.Port);
        Add(command, "@t", profile.Tls13 ? 1 : 0);
        Add(command, "@k", profile.IssuesTickets ? 1 : 0);
        Add(command, "@e", profile.AcceptsPskKe ? 1 : 0);
        Add(command, "@m", (long)profile.MaxEarlyData);
        Add(command, "@at", profile.LearnedAt.ToString("O"));
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static void Add(DbCommand command, string name, object value) => StoreTable.Add(command, name, value);
}
