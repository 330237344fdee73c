using Daiko.Protocol;
using Microsoft.Data.Sqlite;

namespace Daiko.Home.Delegation;

/// <summary>What the home server has learned about a market from its handshakes with it.</summary>
public sealed record MarketProfile(
    string Host,
    int Port,
    bool Tls13,
    bool IssuesTickets,
    bool AcceptsPskKe,
    uint MaxEarlyData,
    DateTimeOffset LearnedAt);

/// <summary>
/// Remembers what each market supports so that <see cref="DelegationMode.Auto"/> can pick the cheapest
/// mode for the terminal without probing every time (kept in the home store).
/// </summary>
public sealed class MarketProfiles
{
    private readonly string _connectionString;

    public MarketProfiles(string databasePath)
    {
        _connectionString = Storage.HomeDatabase.ConnectionString(databasePath);
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            CREATE TABLE IF NOT EXISTS market_profiles (
                host TEXT NOT NULL, port INTEGER NOT NULL, tls13 INTEGER NOT NULL, tickets INTEGER NOT NULL,
                psk_ke INTEGER NOT NULL, max_early_data INTEGER NOT NULL, learned_at TEXT NOT NULL,
                PRIMARY KEY (host, port));
            """;
        command.ExecuteNonQuery();
    }

    private SqliteConnection Open() => Storage.HomeDatabase.Open(_connectionString);

    public MarketProfile? Find(string host, int port)
    {
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT host, port, tls13, tickets, psk_ke, max_early_data, learned_at FROM market_profiles WHERE host = $h AND port = $p";
        command.Parameters.AddWithValue("$h", host);
        command.Parameters.AddWithValue("$p", port);
        using var reader = command.ExecuteReader();
        if (!reader.Read()) return null;
        return new MarketProfile(reader.GetString(0), reader.GetInt32(1), reader.GetInt32(2) != 0, reader.GetInt32(3) != 0,
            reader.GetInt32(4) != 0, (uint)reader.GetInt64(5), DateTimeOffset.Parse(reader.GetString(6), System.Globalization.CultureInfo.InvariantCulture));
    }

    public void Remember(MarketProfile profile)
    {
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO market_profiles(host, port, tls13, tickets, psk_ke, max_early_data, learned_at)
            VALUES ($h, $p, $t, $k, $e, $m, $at)
            ON CONFLICT(host, port) DO UPDATE SET tls13 = $t, tickets = $k, psk_ke = $e, max_early_data = $m, learned_at = $at
            """;
        command.Parameters.AddWithValue("$h", profile.Host);
        command.Parameters.AddWithValue("$p", profile.Port);
        command.Parameters.AddWithValue("$t", profile.Tls13 ? 1 : 0);
        command.Parameters.AddWithValue("$k", profile.IssuesTickets ? 1 : 0);
        command.Parameters.AddWithValue("$e", profile.AcceptsPskKe ? 1 : 0);
        command.Parameters.AddWithValue("$m", (long)profile.MaxEarlyData);
        command.Parameters.AddWithValue("$at", profile.LearnedAt.ToString("O"));
        command.ExecuteNonQuery();
    }

    /// <summary>
    /// The cheapest mode for the terminal, in terminal cost order: resume (one ClientHello, no
    /// certificate work), handoff (no handshake at all on the terminal, but every byte crosses the home
    /// server), relay (works with anything, TLS 1.2 included). An unknown market gets resume, which
    /// falls back to handoff if the market issues no ticket.
    /// </summary>
    public static DelegationMode Choose(MarketProfile? profile) => profile switch
    {
        null => DelegationMode.Resume,
        { Tls13: false } => DelegationMode.Relay,
        { IssuesTickets: true } => DelegationMode.Resume,
        _ => DelegationMode.Handoff,
    };
}
