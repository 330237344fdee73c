using Daiko.Protocol;
using Daiko.Protocol.Messages;

namespace Daiko.Home.Handlers;

/// <summary>
/// Who asked: the connection a request came on and the authenticated device. <see cref="Closed"/> ends
/// the request's work when the channel closes, and also when the device's session ends (lock, idle,
/// revocation) if the dispatcher linked <paramref name="Work"/>.
/// </summary>
public sealed record RequestContext(ControlConnection Connection, string DeviceId, CancellationToken Work = default)
{
    public CancellationToken Closed => Work.CanBeCanceled ? Work : Connection.Closed;
}

/// <summary>
/// What a handler answers: the typed reply, what to start once the reply is on its way (a relay that
/// splices bytes starts after the terminal has learned its id), and what to undo when the reply
/// cannot be sent (the market connection and the device's place it held for that relay).
/// </summary>
public readonly record struct HandlerResult(ControlMessage Reply, Action? AfterReply = null, Action? Abandoned = null)
{
    public static implicit operator HandlerResult(ControlMessage reply) => new(reply);

    public static HandlerResult Error(ErrorCode code, string message, int? triesLeft = null) => new ErrorReply(code, message, triesLeft);
}
