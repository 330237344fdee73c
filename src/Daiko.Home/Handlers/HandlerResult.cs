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
/// <param name="MaybeSent">
/// what to undo instead of <paramref name="Abandoned"/> when the reply's write began and failed: the peer may hold part
/// of it (a reply larger than a TLS record goes out record by record), so tickets in it are wiped here but still count
/// against the device's policy, as delivered ones do; null: <paramref name="Abandoned"/>.
/// </param>
public readonly record struct HandlerResult(ControlMessage Reply, Action? AfterReply = null, Action? Abandoned = null, Action? MaybeSent = null)
{
    public static implicit operator HandlerResult(ControlMessage reply) => new(reply);

    public static HandlerResult Error(ErrorCode code, string message, int? triesLeft = null) => new ErrorReply(code, message, triesLeft);
}
