using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using Daiko.Cards.Site;
using Daiko.Home.Storage;
using Daiko.Home.Trust;
using Npgsql;

namespace Daiko.Host;

/// <summary>site.json: where the site token is (the PKCS#11 module, its label) and whether it is the embedded SoftHSM2.</summary>
public sealed record SiteConfig(string ModulePath, string TokenLabel, bool Embedded);

/// <summary>
/// A hosted deployment's site directory, the same on every node: site.json, the database connection
/// (DIR/postgres, 0600), the HSM credential (DIR/hsm-pin, 0600), the control-channel identity that
/// issues every owner's device certificates (DIR/home-identity.pem/.key), market roots (DIR/trust)
/// and, for SoftHSM2, the token store (DIR/hsm). Nothing in it changes while nodes run: all
/// state is in PostgreSQL and the token.
/// </summary>
public sealed partial class HostSite
{
    public const string DefaultSoftHsm = SiteTokenOptions.SoftHsmModule;

    /// <summary>The command that creates a site (<see cref="Create"/>), its identity included.</summary>
    public const string InitCommand = "daiko host init";

    private HostSite(string directory, SiteConfig config)
    {
        Directory = directory;
        Config = config;
    }

    public string Directory { get; }

    public SiteConfig Config { get; }

    public string ConnectionString => File.ReadAllText(Path.Combine(Directory, "postgres")).Trim();

    public SiteTokenOptions TokenOptions => new(Config.ModulePath, Config.Embedded ? Path.Combine(Directory, "hsm", "softhsm2.conf") : null, Config.TokenLabel);

    /// <summary>Owner names: lower-case letters, digits and dashes, 1 to 48, starting with a letter or digit (they name a schema and key labels).</summary>
    public static bool IsOwnerName(string name) => OwnerName().IsMatch(name);

    // \z, not $: .NET's $ also matches before a last "\n", and the name goes into SQL as a schema name.
    [GeneratedRegex(@"^[a-z0-9][a-z0-9-]{0,47}\z")]
    private static partial Regex OwnerName();

    /// <summary>The PostgreSQL schema that holds one owner's tables.</summary>
    public static string SchemaOf(string owner) => "owner_" + owner.Replace('-', '_');

    public static string RequireOwnerName(string name) => IsOwnerName(name)
        ? name
        : throw new ArgumentException($"'{name}' is not an owner name: use 1 to 48 lower-case letters, digits and dashes");

    /// <summary>
    /// Creates the site directory: copies the connection string, makes the HSM credential, (embedded) the token
    /// store and the site identity. The identity is made here only: nodes and commands load it (<see cref="LoadIdentity"/>).
    /// </summary>
    public static HostSite Create(string directory, string connectionString, string? modulePath)
    {
        RequireSessionConnections(connectionString);
        System.IO.Directory.CreateDirectory(directory);
        if (File.Exists(Path.Combine(directory, "site.json"))) throw new InvalidOperationException($"a hosted site exists already in {directory}");
        WritePrivate(Path.Combine(directory, "postgres"), connectionString.Trim() + "\n");
        WritePrivate(Path.Combine(directory, "hsm-pin"), Convert.ToHexString(RandomNumberGenerator.GetBytes(16)).ToLowerInvariant() + "\n");
        var embedded = modulePath is null;
        if (embedded)
        {
            var tokens = Path.Combine(directory, "hsm", "tokens");
            System.IO.Directory.CreateDirectory(tokens);
            File.WriteAllText(Path.Combine(directory, "hsm", "softhsm2.conf"), $"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n");
        }
        HomeIdentity.LoadOrCreate(directory).Dispose();
        var config = new SiteConfig(modulePath ?? DefaultSoftHsm, "daiko-site", embedded);
        File.WriteAllText(Path.Combine(directory, "site.json"), JsonSerializer.Serialize(config));
        return new HostSite(directory, config);
    }

    public static HostSite Open(string directory)
    {
        var path = Path.Combine(directory, "site.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"no hosted site in {directory}; run '{InitCommand}' first");
        return new HostSite(directory, JsonSerializer.Deserialize<SiteConfig>(File.ReadAllText(path)) ?? throw new InvalidDataException("site.json is unreadable"));
    }

    /// <summary>
    /// The site identity (DIR/home-identity.pem and .key: the control channel's key, pinned by every terminal, and
    /// the device CA), loaded and never made here: on an incomplete copy of the site directory this is a
    /// <see cref="HomeIdentityMissingException"/> naming the missing file and <see cref="InitCommand"/>, rather
    /// than a second identity that terminals which pinned the first refuse.
    /// </summary>
    public HomeIdentity LoadIdentity() => HomeIdentity.Load(Directory, InitCommand);

    /// <summary>The site's HSM credential (never logged, never on a command line).</summary>
    public string HsmPin => File.ReadAllText(Path.Combine(Directory, "hsm-pin")).Trim();

    /// <summary>Creates the site token (in a free slot) and its PIN key.</summary>
    public SiteToken CreateToken() => SiteToken.Create(TokenOptions, HsmPin + "-so", HsmPin);

    public SiteToken OpenToken() => SiteToken.Open(TokenOptions, HsmPin);

    /// <summary>
    /// A data source on the site's database; the pool is shared by every owner a node serves. Its size
    /// is the connection file's Maximum Pool Size when the file names one (sized with PostgreSQL's
    /// max_connections and the number of nodes), else <paramref name="maxPool"/>.
    /// </summary>
    public NpgsqlDataSource OpenDataSource(int maxPool = 50)
    {
        var text = ConnectionString;
        RequireSessionConnections(text, Path.Combine(Directory, "postgres"));
        var builder = new NpgsqlConnectionStringBuilder(text);
        if (!NamesPoolSize(text)) builder.MaxPoolSize = maxPool;
        // Every session is held to the site's limits from its start: a node that vanishes lets go of its locks within a minute.
        return NpgsqlDataSource.Create(PostgresSessionLimits.Hosted.WithStartupOptions(builder.ConnectionString));
    }

    /// <summary>
    /// Refuses a connection string with Multiplexing=true. Each owner's schema is chosen by a session setting (the
    /// search_path set when a connection is taken from the pool) and the purse and owner-name locks are session locks;
    /// with multiplexing Npgsql sends each statement over whichever server connection is free, so one owner's statements
    /// could run in another owner's schema, and an unlock on another session than its lock.
    /// </summary>
    public static void RequireSessionConnections(string connectionString, string? file = null)
    {
        if (!new NpgsqlConnectionStringBuilder(connectionString).Multiplexing) return;
        throw new InvalidOperationException(
            $"the connection string{(file is null ? "" : " in " + file)} sets Multiplexing=true, which a hosted site cannot use: "
            + "each owner's schema is a setting of the database session, and multiplexing runs one connection's statements on "
            + "whichever session is free, so one owner's could reach another's schema. Remove Multiplexing from it "
            + "(and put no pooler in front but one in session mode)");
    }

    /// <summary>
    /// Refuses to go on when the site's secret files (DIR/postgres, the database credential; DIR/hsm-pin, the HSM's)
    /// can be read or written by anyone but their owner, as ssh refuses a key file: the site directory is copied to
    /// every node, and a careless copy leaves them open unnoticed. The error names the file and the chmod that fixes it.
    /// </summary>
    public void RequirePrivateSecrets()
    {
        if (OperatingSystem.IsWindows()) return;
        foreach (var (name, holds) in new[] { ("postgres", "the database's connection string and password"), ("hsm-pin", "the site token's PIN") })
        {
            var path = Path.Combine(Directory, name);
            if (!File.Exists(path)) continue;
            var mode = File.GetUnixFileMode(path);
            if ((mode & OpenToOthers) == 0) continue;
            throw new InvalidOperationException(
                $"{path} holds {holds} and is open to its group or others (mode {Convert.ToString((int)mode, 8).PadLeft(4, '0')}): "
                + $"run 'chmod 600 {path}' (and find out how it came to be so, and who may have read it), then start again");
        }
    }

    private const UnixFileMode OpenToOthers = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
        | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    /// <summary>Whether a connection string sets the pool's size itself (Maximum Pool Size, Max Pool Size or MaxPoolSize).</summary>
    public static bool NamesPoolSize(string connectionString) =>
        new System.Data.Common.DbConnectionStringBuilder { ConnectionString = connectionString }.Keys.Cast<string>()
            .Any(k => k.Replace(" ", "", StringComparison.Ordinal).ToLowerInvariant() is "maxpoolsize" or "maximumpoolsize");

    /// <summary>Where an owner's files are (mail settings, the CSR): DIR/owners/NAME.</summary>
    public string OwnerDirectory(string owner) => Path.Combine(Directory, "owners", owner);

    /// <summary>
    /// Writes a secret file that is 0600 from the call that creates it: a file made at the umask's mode and narrowed
    /// afterwards can be opened by anyone in between, and read through that handle once the secret is in. A file there
    /// already (from an earlier try, or put there by someone else) is removed, not written into, for the same reason.
    /// </summary>
    private static void WritePrivate(string path, string text)
    {
        File.Delete(path);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using var stream = new FileStream(path, options);
        using var writer = new StreamWriter(stream, new System.Text.UTF8Encoding(false));
        writer.Write(text);
    }
}
