using Daiko.Protocol.Wire;

namespace Daiko.Protocol.Messages;

/// <summary>
/// <c>error</c>: a refusal with a code a program acts on, a sentence a person reads (never a secret),
/// and the tries left after a wrong PIN. With id 0 it refuses the whole connection.
/// </summary>
public sealed record ErrorReply(ErrorCode Code, string Message, int? TriesLeft = null) : ControlReply
{
    public const string WireType = "error";

    public override string Type => WireType;

    /// <summary>The code as sent; differs from <see cref="Code"/>'s name only for codes this version does not know.</summary>
    public string CodeName { get; init; } = Code.ToWire();

    internal override void Write(FieldWriter w)
    {
        w.Text("code", CodeName);
        w.Text("message", Message);
        if (TriesLeft is { } left) w.Int("tries_left", left);
    }

    internal static ErrorReply Read(FieldReader r)
    {
        var code = r.Text("code", 64, allowEmpty: false);
        return new ErrorReply(ErrorCodes.FromWire(code), r.Text("message", 4096), r.Has("tries_left") || r.Truncated ? r.Int32("tries_left", 0, 100) : null) { CodeName = code };
    }

    public ControlErrorException ToException() => new(Code, Message, TriesLeft);
}
