namespace Daiko.Cards.Site;

/// <summary>
/// One owner's card as the deployment's database keeps it: the public keys, the PIN verifiers
/// (useless without the site token), the counters and state every node shares (the admin code's wrong
/// entries among them), and the certificate chain.
/// </summary>
public sealed record OwnerCardRow(
    string Owner,
    byte[] TlsKeyInfo,
    byte[] PurseKeyInfo,
    byte[] Pin1Verifier,
    byte[] Pin2Verifier,
    byte[] AdminVerifier,
    int Pin1Failures,
    int Pin2Failures,
    bool Disabled,
    HomeCardState State,
    int Unblocks,
    string? ChainPem,
    int AdminFailures = 0);

/// <summary>
/// Where owners' card rows live (PostgreSQL in a hosted deployment). <see cref="Update{T}"/> decides
/// under the owner's row lock and writes the decision in the same transaction, so that attempts on
/// every node and process are counted one at a time and none is lost or gained.
/// </summary>
public interface IOwnerCardRows
{
    OwnerCardRow? Read(string owner);

    /// <summary>Runs <paramref name="decide"/> on the locked row (SELECT … FOR UPDATE) and stores the row it returns before committing.</summary>
    T Update<T>(string owner, Func<OwnerCardRow, (OwnerCardRow Next, T Result)> decide);
}
