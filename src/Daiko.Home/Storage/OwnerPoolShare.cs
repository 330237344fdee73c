using System.Data;
using Npgsql;

namespace Daiko.Home.Storage;

/// <summary>
/// One hosted owner's share of a node's database pool: the owner's store holds at most half the pool's
/// connections at once (at least one). The node's owners share one pool, so without a share one owner's
/// devices asking at once (or one slow query of theirs held many times over) could take every connection
/// and leave the other owners' requests waiting for the pool until they fail; with it, that owner's next
/// request waits on its own share, and the other half of the pool stays for everyone else (as the node's
/// handshake turns give one owner at most half of them). A share is given back when its connection closes.
/// It waits as long as <see cref="PooledConnections"/> waits for the pool, then fails as the pool does
/// (a transient <see cref="NpgsqlException"/>, answered <c>unavailable</c>).
/// </summary>
public sealed class OwnerPoolShare
{
    private readonly SemaphoreSlim _free;
    private readonly TimeSpan _patience;

    /// <param name="poolSize">The node's pool (its Maximum Pool Size).</param>
    /// <param name="patience">How long a request waits for the owner's share before it fails.</param>
    public OwnerPoolShare(int poolSize, TimeSpan patience)
    {
        Size = Math.Max(1, poolSize / 2);
        PoolSize = poolSize;
        _free = new SemaphoreSlim(Size, Size);
        _patience = patience;
    }

    /// <summary>The share of a pool given by its connection string: half its Maximum Pool Size, waited for as long as the pool is.</summary>
    public static OwnerPoolShare Of(NpgsqlDataSource source)
    {
        var settings = new NpgsqlConnectionStringBuilder(source.ConnectionString);
        return new OwnerPoolShare(settings.MaxPoolSize, TimeSpan.FromSeconds(Math.Max(1, settings.Timeout) * PooledConnections.Waits));
    }

    /// <summary>Connections the owner may hold at once.</summary>
    public int Size { get; }

    public int PoolSize { get; }

    public async Task<NpgsqlConnection> OpenAsync(NpgsqlDataSource source, CancellationToken cancellationToken)
    {
        if (!await _free.WaitAsync(_patience, cancellationToken).ConfigureAwait(false)) throw Exhausted();
        try
        {
            return Held(await PooledConnections.OpenAsync(source, cancellationToken).ConfigureAwait(false));
        }
        catch
        {
            _free.Release();
            throw;
        }
    }

    public NpgsqlConnection Open(NpgsqlDataSource source)
    {
        if (!_free.Wait(_patience)) throw Exhausted();
        try
        {
            return Held(PooledConnections.Open(source));
        }
        catch
        {
            _free.Release();
            throw;
        }
    }

    /// <summary>Gives the share back once, when the connection closes: its disposal closes it, and a broken one is closed by its disposal too (Npgsql raises StateChange for both; it has no Disposed event).</summary>
    private NpgsqlConnection Held(NpgsqlConnection connection)
    {
        var given = 0;
        void GiveBack()
        {
            if (Interlocked.Exchange(ref given, 1) == 0) _free.Release();
        }
        connection.StateChange += (_, change) =>
        {
            if (change.CurrentState == ConnectionState.Closed) GiveBack();
        };
        return connection;
    }

    private NpgsqlException Exhausted() => new(
        $"this owner's share of the node's database connections ({Size} of {PoolSize}) stayed in use for {_patience.TotalSeconds:0} s",
        new TimeoutException());
}
