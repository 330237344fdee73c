namespace Daiko.TestSupport;

/// <summary>The two stores every store contract runs on.</summary>
public enum StoreKind
{
    Sqlite,
    Postgres,
}

/// <summary>
/// Where one store-contract test keeps its data: its own temporary directory, holding a SQLite file
/// (<see cref="SqlitePath"/>) or a throwaway PostgreSQL cluster (<see cref="Postgres"/>, started on
/// first use). Disposing stops the cluster and deletes the directory. The SQLite and PostgreSQL variants
/// of a contract differ only in the <see cref="StoreKind"/> they pass.
/// </summary>
public sealed class TestDatabase(StoreKind kind, string prefix) : IDisposable
{
    private readonly TempDirectory _dir = new(prefix);
    private PostgresServer? _postgres;

    public StoreKind Kind => kind;

    /// <summary>The test's own directory (the SQLite file, the cluster's data and anything else the test keeps).</summary>
    public string Directory => _dir.Path;

    public string SqlitePath => System.IO.Path.Combine(_dir.Path, "home.db");

    /// <summary>The PostgreSQL cluster, started on first use.</summary>
    public PostgresServer Postgres => _postgres ??= PostgresServer.StartAsync(_dir.Path).GetAwaiter().GetResult();

    public void Dispose()
    {
        _postgres?.Dispose();
        _dir.Dispose();
    }
}
