using System.Diagnostics;
using System.Text.Json;
using Daiko.TestSupport;

namespace Daiko.EndToEnd.Tests;

/// <summary>
/// <c>home init</c> on a real terminal (a pseudo-terminal driven by python's pty module) asks each new
/// PIN twice; <c>--json</c> on init, cert import, appliance and payee commands prints one object.
/// </summary>
public sealed class HomeCommandsJsonTests : IDisposable
{
    private readonly TempDirectory _dir = new("daiko-json");

    public void Dispose() => _dir.Dispose();

    /// <summary>Runs the daiko CLI on a pseudo-terminal, answering each prompt (in order) once it appears; returns (exit code, everything the terminal showed).</summary>
    private static async Task<(int ExitCode, string Screen)> OnATerminalAsync(string[] arguments, params (string Prompt, string Answer)[] dialogue)
    {
        const string script = """
            import json, os, pty, select, sys, time
            dialogue = json.loads(os.environ["DAIKO_PTY_DIALOGUE"])
            pid, fd = pty.fork()
            if pid == 0:
                os.execvp(sys.argv[1], sys.argv[1:])
            screen = b""
            def read(deadline):
                global screen
                ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.time()))
                if not ready:
                    return False
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    return None
                if not chunk:
                    return None
                screen += chunk
                return True
            for prompt, answer in dialogue:
                deadline = time.time() + 60
                while prompt.encode() not in screen:
                    if time.time() > deadline or read(deadline) is None:
                        sys.stdout.write(screen.decode(errors="replace"))
                        sys.stdout.write("\n[pty] gave up waiting for: " + prompt + "\n")
                        os.kill(pid, 9)
                        sys.exit(99)
                screen = screen.replace(prompt.encode(), b"<" + prompt.encode() + b">", 1)
                os.write(fd, answer.encode() + b"\r")
            deadline = time.time() + 120
            while time.time() < deadline and read(deadline) is not None:
                pass
            _, status = os.waitpid(pid, 0)
            sys.stdout.write(screen.decode(errors="replace"))
            sys.exit(os.waitstatus_to_exitcode(status))
            """;
        var info = new ProcessStartInfo("python3") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-c", script, "dotnet", DaikoCli.DllPath }.Concat(arguments)) info.ArgumentList.Add(a);
        info.Environment["DAIKO_PTY_DIALOGUE"] = JsonSerializer.Serialize(dialogue.Select(d => new[] { d.Prompt, d.Answer }));
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await output + await error);
    }

    [Fact]
    public async Task HomeInit_OnATerminal_AsksEachNewPinTwice_AndRefusesTwoEntriesThatDiffer()
    {
        var home = Path.Combine(_dir.Path, "home-typo");
        var (exit, screen) = await OnATerminalAsync(["home", "init", "--home", home], ("PIN1: ", "1111"), ("PIN1 again: ", "1112"));

        Assert.True(exit == 2, screen);
        Assert.Contains("the two entries of the PIN1 differ", screen, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(home, "user.csr")), screen);
    }

    [Fact]
    public async Task HomeInit_OnATerminal_WithEachPinConfirmed_CreatesTheCard_AndPrintsJson()
    {
        var home = Path.Combine(_dir.Path, "home");
        var (exit, screen) = await OnATerminalAsync(["home", "init", "--home", home, "--json"],
            ("PIN1: ", "1111"), ("PIN1 again: ", "1111"), ("PIN2: ", "2222"), ("PIN2 again: ", "2222"),
            ("admin unblock code: ", "admin-code-123"), ("admin unblock code again: ", "admin-code-123"));

        Assert.True(exit == 0, screen);
        Assert.Contains("\"card_id\":", screen, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(home, "user.csr")), screen);
    }

    [Fact]
    public async Task InitCertImportApplianceAndPayee_WithJson_PrintOneObjectEach()
    {
        var home = Path.Combine(_dir.Path, "home");
        var pki = TestPki.Create(Path.Combine(_dir.Path, "pki"));
        var init = Object(await HomeAndTerminal.Ok(["home", "init", "--home", home, "--subject", TestPki.UserSubject, "--json"], "1111\n2222\nadmin-code-123\n"));
        Assert.Equal(Path.Combine(home, "user.csr"), init.GetProperty("csr").GetString());
        Assert.False(string.IsNullOrEmpty(init.GetProperty("card_id").GetString()));

        var certificate = HomeAndTerminal.IssueUserCertificate(pki, home, Path.Combine(_dir.Path, "user.pem"));
        var import = Object(await HomeAndTerminal.Ok(["home", "cert", "import", "--home", home, "--cert", certificate, "--chain", pki.RootPath, "--json"], "2222\n"));
        Assert.Equal(TestPki.UserSubject, import.GetProperty("imported").GetString());
        // An existing key and certificate moved in instead (PKCS#12 password, then PIN2): the card's id is its key's, now
        // the moved one's.
        var p12 = Path.Combine(_dir.Path, "user.p12");
        File.WriteAllBytes(p12, pki.User.Certificate.Export(System.Security.Cryptography.X509Certificates.X509ContentType.Pkcs12, "p12-secret"));
        var moved = Object(await HomeAndTerminal.Ok(["home", "cert", "import-p12", "--home", home, "--p12", p12, "--json"], "p12-secret\n2222\n"));
        Assert.Equal(TestPki.UserSubject, moved.GetProperty("imported").GetString());
        var movedKey = System.Security.Cryptography.SHA256.HashData(pki.User.Certificate.PublicKey.ExportSubjectPublicKeyInfo());
        Assert.Equal(Convert.ToHexString(movedKey).ToLowerInvariant(), moved.GetProperty("card_id").GetString());
        Assert.NotEqual(init.GetProperty("card_id").GetString(), moved.GetProperty("card_id").GetString());

        var appliance = Object(await HomeAndTerminal.Ok(["home", "appliance", "add", "--home", home, "--name", "heater", "--url", "http://127.0.0.1:9/", "--json"]));
        Assert.Equal("heater", appliance.GetProperty("registered").GetString());

        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var keyPath = Path.Combine(_dir.Path, "bank.pem");
        File.WriteAllText(keyPath, key.ExportSubjectPublicKeyInfoPem());
        Object(await HomeAndTerminal.Ok(["home", "payee", "add", "--home", home, "--name", "bank.test", "--role", "bank", "--key", keyPath, "--json"]));
        var list = Object(await HomeAndTerminal.Ok(["home", "payee", "list", "--home", home, "--json"]));
        var payee = Assert.Single(list.GetProperty("payees").EnumerateArray());
        Assert.Equal(("bank.test", "bank"), (payee.GetProperty("name").GetString(), payee.GetProperty("role").GetString()));
        Assert.Equal("bank.test", Object(await HomeAndTerminal.Ok(["home", "payee", "remove", "--home", home, "--name", "bank.test", "--json"])).GetProperty("removed").GetString());
        var empty = await HomeAndTerminal.Ok(["home", "payee", "list", "--home", home]);
        Assert.Contains("no payee is declared", empty.StandardOutput, StringComparison.Ordinal);

        var notAKey = await DaikoCli.RunAsync(["home", "payee", "add", "--home", home, "--name", "bank.test", "--role", "bank", "--key", Path.Combine(home, "user.csr")]);
        Assert.Equal(1, notAKey.ExitCode);
        Assert.Contains("holds no EC public key", notAKey.StandardError, StringComparison.Ordinal);
        var badRole = await DaikoCli.RunAsync(["home", "payee", "add", "--home", home, "--name", "bank.test", "--role", "mint", "--key", keyPath]);
        Assert.Equal(2, badRole.ExitCode);
    }

    private static JsonElement Object(CliResult result)
    {
        var line = Assert.Single(result.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        var root = JsonDocument.Parse(line).RootElement;
        Assert.Equal(JsonValueKind.Object, root.ValueKind);
        return root;
    }
}
