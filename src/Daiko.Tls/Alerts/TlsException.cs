namespace Daiko.Tls;

/// <summary>What went wrong, independent of the alert that carried it.</summary>
public enum TlsError
{
    /// <summary>A message or record could not be parsed.</summary>
    Malformed,

    /// <summary>A message arrived that the current state does not expect.</summary>
    UnexpectedMessage,

    /// <summary>The server chose parameters the client did not offer or cannot use.</summary>
    IllegalParameter,

    /// <summary>Record authentication failed.</summary>
    BadRecordMac,

    /// <summary>A record exceeded the protocol's size limits.</summary>
    RecordOverflow,

    /// <summary>The server's certificate chain was rejected.</summary>
    CertificateRejected,

    /// <summary>A signature or Finished MAC did not verify.</summary>
    VerificationFailed,

    /// <summary>The peer sent an alert.</summary>
    PeerAlert,

    /// <summary>The transport closed or failed.</summary>
    TransportClosed,

    /// <summary>The handshake, or one read or write of the connection, did not finish in time.</summary>
    Timeout,

    /// <summary>No common parameters (suite, group, signature scheme, version).</summary>
    HandshakeFailure,

    /// <summary>The connection can no longer be used (it was exported, closed or failed before).</summary>
    ConnectionUnusable,

    /// <summary>The client's signer failed.</summary>
    SignerFailed,

    /// <summary>The peer ended the transport without close_notify: data read so far may be cut short.</summary>
    Truncated,
}

/// <summary>
/// Every failure of the engine: a typed error and the alert it sent (or received, when
/// <see cref="SentByPeer"/>). Messages never contain key material.
/// </summary>
public sealed class TlsException : Exception
{
    public TlsException(TlsError error, AlertDescription alert, string message, Exception? inner = null, bool sentByPeer = false)
        : base(message, inner)
    {
        Error = error;
        Alert = alert;
        SentByPeer = sentByPeer;
    }

    public TlsError Error { get; }

    public AlertDescription Alert { get; }

    public bool SentByPeer { get; }

    internal static TlsException Decode(string what) => new(TlsError.Malformed, AlertDescription.DecodeError, $"malformed {what}");

    internal static TlsException Unexpected(string what) => new(TlsError.UnexpectedMessage, AlertDescription.UnexpectedMessage, $"unexpected {what}");

    internal static TlsException Illegal(string what) => new(TlsError.IllegalParameter, AlertDescription.IllegalParameter, what);
}
