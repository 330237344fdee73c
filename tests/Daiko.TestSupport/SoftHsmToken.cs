using System.Diagnostics;

namespace Daiko.TestSupport;

/// <summary>
/// A SoftHSM2 token in a private token store, initialized with softhsm2-util as a provisioned smart
/// card would come: a label and a user PIN. <see cref="ConfPath"/> goes into SOFTHSM2_CONF.
/// </summary>
public sealed record SoftHsmToken(string ConfPath, string Label, string ModulePath)
{
    public const string DefaultModule = "/usr/lib/softhsm/libsofthsm2.so";

    public static SoftHsmToken Create(string directory, string label, string userPin)
    {
        var tokens = Path.Combine(directory, "tokens");
        Directory.CreateDirectory(tokens);
        var conf = Path.Combine(directory, "softhsm2.conf");
        File.WriteAllText(conf, $"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n");
        var start = new ProcessStartInfo("softhsm2-util", ["--init-token", "--free", "--label", label, "--so-pin", "so-pin-1234", "--pin", userPin])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["SOFTHSM2_CONF"] = conf;
        using var process = Process.Start(start) ?? throw new InvalidOperationException("softhsm2-util did not start");
        var output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromSeconds(30)) || process.ExitCode != 0)
        {
            throw new InvalidOperationException($"softhsm2-util --init-token failed: {output}");
        }
        return new SoftHsmToken(conf, label, DefaultModule);
    }
}
