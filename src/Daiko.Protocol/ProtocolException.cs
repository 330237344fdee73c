namespace Daiko.Protocol;

/// <summary>
/// The peer broke the control protocol. <see cref="Field"/> names the offending field when the frame
/// was a readable message with a bad field (answered with <see cref="ErrorCode.BadRequest"/>);
/// <see cref="RequestId"/> is the id of that message when it could be read.
/// </summary>
public sealed class ProtocolException(string message, string? field = null, Exception? inner = null, ErrorCode code = ErrorCode.BadRequest) : Exception(message, inner)
{
    public string? Field { get; } = field;

    /// <summary>The code a request that failed to decode is answered with: bad-request, or unknown-request for a type this version does not know.</summary>
    public ErrorCode Code { get; } = code;

    public long? RequestId { get; internal set; }

    public bool IsReply { get; internal set; }

    public string? MessageType { get; internal set; }
}

/// <summary>An <c>error</c> reply, or a failure the terminal reports the same way: a code a program can act on and a sentence a person can.</summary>
public sealed class ControlErrorException(ErrorCode code, string message, int? triesLeft = null, Exception? inner = null) : Exception(message, inner)
{
    public ErrorCode Code { get; } = code;

    /// <summary>The code's wire name (e.g. <c>wrong-pin2</c>).</summary>
    public string CodeName => Code.ToWire();

    public int? TriesLeft { get; } = triesLeft;
}
