namespace Daiko.Protocol;

/// <summary>
/// <c>daiko-enroll://HOST:PORT/CODE</c>: where a new terminal reaches the home server and the one-time
/// enrollment code, in one string (the owner's console shows it as a QR code; <c>terminal enroll --uri</c>
/// takes it). HOST may be a name, an IPv4 address or a bracketed IPv6 address.
/// </summary>
public static class EnrollmentUri
{
    public const string Scheme = "daiko-enroll";

    public static string Format(string homeHostPort, string code) => $"{Scheme}://{homeHostPort}/{code}";

    /// <summary>The home's HOST:PORT and the code; a <see cref="FormatException"/> saying what is wrong otherwise.</summary>
    public static (string Home, string Code) Parse(string text)
    {
        if (!Uri.TryCreate(text.Trim(), UriKind.Absolute, out var uri) || uri.Scheme != Scheme)
            throw new FormatException($"an enrollment URI looks like {Scheme}://HOST:PORT/CODE; what was given is not one (it is not shown here: it may hold the code)");
        if (uri.IsDefaultPort || uri.Port <= 0 || string.IsNullOrEmpty(uri.Host))
            throw new FormatException($"the enrollment URI names no home HOST:PORT (got '{Scheme}://{uri.Authority}/…')");
        if (!string.IsNullOrEmpty(uri.Query) || !string.IsNullOrEmpty(uri.Fragment) || !string.IsNullOrEmpty(uri.UserInfo))
            throw new FormatException("an enrollment URI has no user, query or fragment");
        var code = uri.AbsolutePath.Trim('/');
        EnrollmentCode.Split(code);
        var host = uri.HostNameType == UriHostNameType.IPv6 ? $"[{uri.Host.Trim('[', ']')}]" : uri.Host;
        return ($"{host}:{uri.Port}", code);
    }
}
