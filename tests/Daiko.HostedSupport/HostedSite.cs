using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Daiko.TestSupport;
using Npgsql;

namespace Daiko.TestSupport.Hosted;

/// <summary>
/// A hosted deployment as separate processes: a real PostgreSQL server, <c>daiko host init</c> with the
/// embedded SoftHSM2 site token, owners added through the CLI with certificates from the test PKI, an
/// openssl market requiring client certificates, and as many <c>daiko host serve</c> nodes as a test starts.
/// </summary>
public sealed class HostedSite(TestPki? pki = null)
{
    public const string AccessPin = "432100";

    private readonly List<ExternalProcess> _nodes = new();
    private PostgresServer? _postgres;

    public TempDirectory Dir { get; } = new("daiko-hosted");

    private TempDirectory PostgresDir { get; } = new("daiko-hosted-pg");

    public TestPki Pki { get; private set; } = null!;

    public string Site => Path.Combine(Dir.Path, "site");

    public OpenSslServer Market { get; private set; } = null!;

    public string MarketUrl => $"https://localhost:{Market.Port}/";

    public string ConnectionString => _postgres!.ConnectionString;

    public PostgresServer Postgres => _postgres!;

    /// <summary>Each owner's PIN1 and PIN2 (distinct per owner, so that one owner's PINs are wrong for another).</summary>
    public static (string Pin1, string Pin2) PinsOf(string owner) => ($"1{owner.Length:00}{owner[0] % 10}1", $"2{owner.Length:00}{owner[0] % 10}2");

    public static string SubjectOf(string owner) => $"CN={char.ToUpperInvariant(owner[0])}{owner[1..]} Example, O=Daiko Users";

    public async Task InitializeAsync()
    {
        _postgres = await PostgresServer.StartAsync(PostgresDir.Path);
        Pki = pki ?? TestPki.Create(Path.Combine(Dir.Path, "pki"));
        var connection = Path.Combine(Dir.Path, "postgres.conn");
        await File.WriteAllTextAsync(connection, ConnectionString.Replace("Pooling=false;", "", StringComparison.Ordinal));
        var init = System.Text.Json.JsonDocument.Parse((await Ok(["host", "init", "--site", Site, "--postgres-file", connection, "--json"])).StandardOutput).RootElement;
        if (init.GetProperty("site").GetString() != Path.GetFullPath(Site) || !init.GetProperty("migrated").GetBoolean())
        {
            throw new InvalidOperationException($"host init --json said {init}");
        }
        await Ok(["host", "trust", "add", "--site", Site, "--ca", Pki.RootPath]);
        Market = await OpenSslServer.StartAsync(Pki, new TlsPeerOptions { Www = true, RequireClientCertificate = true });
    }

    /// <summary>Adds an owner with its PINs and imports the certificate the test CA issues for its request.</summary>
    public async Task AddOwnerAsync(string owner)
    {
        var (pin1, pin2) = PinsOf(owner);
        await Ok(["host", "owner", "add", "--site", Site, "--owner", owner, "--subject", SubjectOf(owner)], $"{pin1}\n{pin2}\nadmin-code-{owner}\n");
        var request = CertificateRequest.LoadSigningRequestPem(await File.ReadAllTextAsync(Path.Combine(Site, "owners", owner + ".csr")), HashAlgorithmName.SHA256);
        var pem = Path.Combine(Dir.Path, owner + ".pem");
        await File.WriteAllTextAsync(pem, Pki.IssueForPublicKey(request.PublicKey, SubjectOf(owner)).ExportCertificatePem());
        await Ok(["host", "cert", "import", "--site", Site, "--owner", owner, "--cert", pem], pin2 + "\n");
    }

    /// <summary>Starts a node (with <paramref name="options"/> added to <c>host serve</c>); returns it and its port.</summary>
    public Task<(ExternalProcess Node, int Port)> StartNodeAsync(int? port = null, params string[] options) => StartNodeOnAsync(Site, port, options);

    /// <summary>Starts a node on <paramref name="site"/> (a copy of the site directory, as another machine holds it).</summary>
    public async Task<(ExternalProcess Node, int Port)> StartNodeOnAsync(string site, int? port = null, params string[] options)
    {
        var chosen = port ?? Loopback.FreePort();
        var node = DaikoCli.Start(["host", "serve", "--site", site, "--listen", $"127.0.0.1:{chosen}", .. options]);
        _nodes.Add(node);
        await node.WaitForOutputAsync("hosted node listening", TimeSpan.FromSeconds(30));
        return (node, chosen);
    }

    /// <summary>
    /// A copy of the site directory, beside it under <paramref name="name"/>, as another node's machine holds it
    /// (its token configuration still names the one token store), without the files named in <paramref name="leftOut"/>.
    /// </summary>
    public string CopyOfSite(string name, params string[] leftOut)
    {
        var copy = Path.Combine(Dir.Path, name);
        foreach (var file in Directory.EnumerateFiles(Site, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(Site, file);
            if (leftOut.Contains(relative, StringComparer.Ordinal)) continue;
            var target = Path.Combine(copy, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        return copy;
    }

    /// <summary>
    /// Enrolls a new terminal of <paramref name="owner"/> through <paramref name="port"/> (the loopback market allowed),
    /// in the terminal directory <paramref name="terminalName"/> (default OWNER-NAME).
    /// </summary>
    public async Task<string> EnrollAsync(string owner, string name, int port, string? terminalName = null)
    {
        var code = (await Ok(["host", "device", "add", "--site", Site, "--owner", owner, "--name", name, .. LoopbackMarkets.PolicyOptions])).StandardOutput.Trim();
        var terminal = Path.Combine(Dir.Path, "terminals", terminalName ?? owner + "-" + name);
        await Ok(["terminal", "enroll", "--terminal", terminal, "--home", $"127.0.0.1:{port}", "--code", code], AccessPin + "\n");
        return terminal;
    }

    public static Task<CliResult> UnlockAsync(string terminal, string pin1, string pin2) =>
        DaikoCli.RunAsync(["terminal", "unlock", "--terminal", terminal], $"{AccessPin}\n{pin1}\n{pin2}\n");

    public static async Task UnlockAsOwnerAsync(string terminal, string owner)
    {
        var (pin1, pin2) = PinsOf(owner);
        var result = await UnlockAsync(terminal, pin1, pin2);
        Require.That(result.ExitCode == 0, $"unlock failed: {result}");
    }

    public Task<CliResult> GetAsync(string terminal, string mode = "relay") =>
        DaikoCli.RunAsync(["terminal", "get", MarketUrl, "--terminal", terminal, "--mode", mode], timeout: TimeSpan.FromSeconds(60));

    /// <summary><c>host card status --json</c> of an owner: (state, PIN1 tries left, PIN2 tries left).</summary>
    public async Task<(string State, int Pin1Left, int Pin2Left)> CardAsync(string owner)
    {
        var json = System.Text.Json.JsonDocument.Parse((await Ok(["host", "card", "status", "--site", Site, "--owner", owner, "--json"])).StandardOutput).RootElement;
        return (json.GetProperty("state").GetString()!, json.GetProperty("pin1_tries_left").GetInt32(), json.GetProperty("pin2_tries_left").GetInt32());
    }

    /// <summary>Rows of one query on the deployment's database (for checks only a database can answer).</summary>
    public async Task<List<string>> QueryAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<string>();
        while (await reader.ReadAsync()) rows.Add(reader.IsDBNull(0) ? "" : Convert.ToString(reader.GetValue(0), System.Globalization.CultureInfo.InvariantCulture)!);
        return rows;
    }

    public static async Task<CliResult> Ok(string[] args, string? stdin = null)
    {
        var result = await DaikoCli.RunAsync(args, stdin, TimeSpan.FromSeconds(90));
        Require.That(result.ExitCode == 0, $"daiko {string.Join(' ', args)} failed: {result}");
        return result;
    }

    public async Task DisposeAsync()
    {
        foreach (var terminal in Directory.Exists(Path.Combine(Dir.Path, "terminals")) ? Directory.GetDirectories(Path.Combine(Dir.Path, "terminals")) : [])
            await DaikoCli.RunAsync(["terminal", "lock", "--terminal", terminal], timeout: TimeSpan.FromSeconds(20));
        foreach (var node in _nodes) node.Dispose();
        Market?.Dispose();
        _postgres?.Dispose();
        PostgresDir.Dispose();
        Dir.Dispose();
    }
}
