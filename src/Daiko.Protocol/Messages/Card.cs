using Daiko.Protocol.Wire;

namespace Daiko.Protocol.Messages;

/// <summary><c>unlock</c>: PIN1 and PIN2, both checked and counted on every unlock.</summary>
public sealed record UnlockRequest(string Pin1, string Pin2) : ControlMessage
{
    public const string WireType = "unlock";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Text("pin1", Pin1);
        w.Text("pin2", Pin2);
    }

    internal static UnlockRequest Read(FieldReader r) => new(r.Text("pin1", ControlProtocol.MaxPinLength), r.Text("pin2", ControlProtocol.MaxPinLength));
}

/// <summary><c>unlocked</c>: the card's state after the unlock.</summary>
public sealed record UnlockedReply(CardState State) : ControlReply
{
    public const string WireType = "unlocked";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) => w.Text("state", State.ToWire());

    internal static UnlockedReply Read(FieldReader r) => new(r.Choice("state", WireNames.States));
}

/// <summary><c>lock</c> ("done"): the card goes back to remote-access-wait.</summary>
public sealed record LockRequest : ControlMessage
{
    public const string WireType = "lock";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) { }

    internal static LockRequest Read(FieldReader r) => new();
}

/// <summary><c>locked</c>: the card's state after the lock.</summary>
public sealed record LockedReply(CardState State) : ControlReply
{
    public const string WireType = "locked";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) => w.Text("state", State.ToWire());

    internal static LockedReply Read(FieldReader r) => new(r.Choice("state", WireNames.States));
}

/// <summary><c>card-status</c> request.</summary>
public sealed record CardStatusRequest : ControlMessage
{
    public const string WireType = "card-status";

    public override string Type => WireType;

    internal override void Write(FieldWriter w) { }

    internal static CardStatusRequest Read(FieldReader r) => new();
}

/// <summary><c>card-status</c> reply: the state and the tries left for each PIN.</summary>
public sealed record CardStatusReply(CardState State, int Pin1TriesLeft, int Pin2TriesLeft) : ControlReply
{
    public const string WireType = "card-status";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Text("state", State.ToWire());
        w.Int("pin1_tries_left", Pin1TriesLeft);
        w.Int("pin2_tries_left", Pin2TriesLeft);
    }

    internal static CardStatusReply Read(FieldReader r) =>
        new(r.Choice("state", WireNames.States), r.Int32("pin1_tries_left", 0, 100), r.Int32("pin2_tries_left", 0, 100));
}
