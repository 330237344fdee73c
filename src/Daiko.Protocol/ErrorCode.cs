namespace Daiko.Protocol;

/// <summary>What a program acts on when a request is refused (the <c>code</c> of an <c>error</c> reply).</summary>
public enum ErrorCode
{
    /// <summary>A code this version does not know (sent by a newer peer); the message still explains it.</summary>
    Unrecognized,
    BadRequest,
    Unauthenticated,
    PolicyRefused,
    ProtocolVersion,
    UnknownRequest,
    Internal,
    Unavailable,
    UnknownDevice,
    Revoked,
    AlreadyEnrolled,
    BadKey,
    EnrollmentRefused,
    HomeMismatch,
    Locked,
    WrongPin1,
    WrongPin2,
    CardDisabled,
    CardLocked,
    CardNotReady,
    MarketUnreachable,
    MarketCertificate,
    MarketFailed,
    HandshakeFailed,
    NoTicket,
    TicketRefused,
    BadMode,
    BadContent,
    SignFailed,
    PurseBadSignature,
    PurseMalformed,
    PurseExpired,
    PurseInsufficientBalance,
    PurseWrongCurrency,
    PurseOutsideCancellationWindow,
    PurseAlreadyCancelled,
    PurseUnknownPayment,
    PurseCardNotReady,
    PurseWrongCard,
    PurseSealBroken,
    ApplianceUnknownAppliance,
    ApplianceUnreachable,
    ApplianceRefused,
    BankRefused,
    MarketRefused,
    NoMarketUrl,
    Refused,

    /// <summary>A money id this party already used for a different message (an identical repeat gets the stored answer instead).</summary>
    Conflict,
}

/// <summary>The wire names of <see cref="ErrorCode"/> (docs/protocol.md lists them).</summary>
public static class ErrorCodes
{
    private static readonly Dictionary<ErrorCode, string> Names = Enum.GetValues<ErrorCode>().ToDictionary(c => c, WireNameOf);
    private static readonly Dictionary<string, ErrorCode> Codes = Names.Where(p => p.Key != ErrorCode.Unrecognized).ToDictionary(p => p.Value, p => p.Key, StringComparer.Ordinal);

    /// <summary>The name on the wire, e.g. <c>wrong-pin1</c>, <c>purse-badsignature</c>.</summary>
    public static string ToWire(this ErrorCode code) => Names[code];

    /// <summary>The code for a wire name; <see cref="ErrorCode.Unrecognized"/> for names this version does not know.</summary>
    public static ErrorCode FromWire(string name) => Codes.GetValueOrDefault(name, ErrorCode.Unrecognized);

    private static string WireNameOf(ErrorCode code)
    {
        var name = code.ToString();
        foreach (var group in new[] { "Purse", "Appliance" })
        {
            if (name.StartsWith(group, StringComparison.Ordinal) && name.Length > group.Length)
            {
                return group.ToLowerInvariant() + "-" + name[group.Length..].ToLowerInvariant();
            }
        }
        var words = new System.Text.StringBuilder();
        for (var i = 0; i < name.Length; i++)
        {
            if (char.IsUpper(name[i]) && i > 0) words.Append('-');
            words.Append(char.ToLowerInvariant(name[i]));
        }
        return words.ToString();
    }
}
