using System.CommandLine;
using System.CommandLine.Parsing;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using Daiko.Home.Web;

namespace Daiko.Cli.Commands;

/// <summary>
/// <c>--console HOST:PORT</c> with <c>--console-cert PEM --console-key PEM</c>, as <c>home serve</c> and
/// <c>host serve</c> take them: the address checked while parsing, the certificate and its key given
/// together, and (where nothing else gives TLS) plain HTTP refused beyond loopback.
/// </summary>
internal sealed class ConsoleOptions(string description, string certificateDescription, params string[] aliases)
{
    public Option<string> Address { get; } = new Option<string>("--console", aliases) { Description = description }.HostPort();

    public Option<string> Certificate { get; } = new("--console-cert") { Description = certificateDescription, HelpName = "PEM" };

    public Option<string> Key { get; } = new("--console-key") { Description = "its private key (PEM file, 0600)", HelpName = "PEM" };

    public IEnumerable<Option> All => [Address, Certificate, Key];

    /// <summary>
    /// The parse-time errors: a certificate without its key or a key without its certificate; and, when
    /// <paramref name="tlsOnlyFrom"/> names the only source of TLS, an address beyond loopback without it.
    /// </summary>
    public void Check(CommandResult result, string? tlsOnlyFrom = null)
    {
        if ((result.GetValue(Certificate) is null) != (result.GetValue(Key) is null)) result.AddError("--console-cert and --console-key go together");
        else if (tlsOnlyFrom is not null && result.GetValue(Certificate) is null && result.GetValue(Address) is { } text && BeyondLoopback(text))
            result.AddError(WebSide.PlainHttpRefused(text, tlsOnlyFrom));
    }

    /// <summary>The certificate with its key from the two PEM files, or null when none was given.</summary>
    public static X509Certificate2? Load(string? certificate, string? key) => certificate is null ? null : X509Certificate2.CreateFromPemFile(certificate, key);

    private static bool BeyondLoopback(string text)
    {
        try
        {
            return !IPAddress.IsLoopback(HomeServerCommands.ParseEndpoint(text, "--console").Address);
        }
        catch (CliUsageException)
        {
            return false; // said when the command runs
        }
    }
}
