using Daiko.Protocol.Wire;

namespace Daiko.Protocol.Messages;

/// <summary><c>enroll</c>: the secret part of the enrollment code and the device's P-256 public key.</summary>
public sealed record EnrollRequest(string Secret, byte[] DeviceSpki) : ControlMessage
{
    public const string WireType = "enroll";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Text("secret", Secret);
        w.Bytes("device_spki", DeviceSpki);
    }

    internal static EnrollRequest Read(FieldReader r) => new(r.Text("secret", 64, allowEmpty: false), r.Bytes("device_spki", 1024));
}

/// <summary><c>enrolled</c>: the new device's id and name, its certificate and the home server's (DER).</summary>
public sealed record EnrolledReply(string DeviceId, string Name, byte[] Certificate, byte[] HomeCertificate) : ControlReply
{
    public const string WireType = "enrolled";

    public override string Type => WireType;

    internal override void Write(FieldWriter w)
    {
        w.Text("device_id", DeviceId);
        w.Text("name", Name);
        w.Bytes("certificate", Certificate);
        w.Bytes("home_certificate", HomeCertificate);
    }

    internal static EnrolledReply Read(FieldReader r) => new(
        r.Text("device_id", ControlProtocol.MaxNameLength, allowEmpty: false),
        r.Text("name", ControlProtocol.MaxNameLength),
        r.Bytes("certificate", ControlProtocol.MaxCertificateBytes),
        r.Bytes("home_certificate", ControlProtocol.MaxCertificateBytes));
}
