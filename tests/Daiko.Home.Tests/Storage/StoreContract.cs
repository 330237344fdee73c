using Daiko.Home.Storage;
using Daiko.TestSupport;

namespace Daiko.Home.Tests.Storage;

/// <summary>
/// The base of every contract that runs on SQLite and on a real PostgreSQL server: the test's own
/// <see cref="TestDatabase"/>; the two variants of a contract differ only in the <see cref="StoreKind"/> they pass.
/// </summary>
public abstract class StoreContract(StoreKind kind, string prefix) : IDisposable
{
    private readonly TestDatabase _database = new(kind, prefix);

    /// <summary>The test's own directory.</summary>
    protected string Dir => _database.Directory;

    /// <summary>A new home store on the test's database (as another process or node would open it).</summary>
    protected IHomeStore Store() => _database.Kind == StoreKind.Postgres
        ? HomeStore.Postgres(_database.PostgresConnectionString)
        : HomeStore.Sqlite(_database.SqlitePath);

    /// <summary>The PostgreSQL variant's connection string (for tests that edit the rows behind the store's back).</summary>
    protected string PostgresConnectionString => _database.PostgresConnectionString;

    public virtual void Dispose()
    {
        _database.Dispose();
        GC.SuppressFinalize(this);
    }
}
