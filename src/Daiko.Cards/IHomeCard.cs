using Daiko.Money;
using Daiko.Tls;

namespace Daiko.Cards;

/// <summary>
/// What a home server asks of an owner's home card: its keys' signatures (gated on crypto-ready), the
/// PIN state machine of seed Fig. 6 and the purse counter. <see cref="HomeCard"/> is one owner's own
/// token (the embedded default); a hosted deployment's card keeps many owners' keys as owner-labelled
/// objects in one site token (<see cref="Site.HostedCard"/>).
/// </summary>
public interface IHomeCard
{
    /// <summary>A stable id: hex SHA-256 of the TLS identity key (SubjectPublicKeyInfo).</summary>
    string CardId { get; }

    /// <summary>The user's certificate chain, leaf first (empty until imported).</summary>
    IReadOnlyList<byte[]> CertificateChain { get; }

    /// <summary>Signs TLS client CertificateVerify content with the TLS identity key, and nothing else; only while crypto-ready.</summary>
    ITlsSigner TlsSigner { get; }

    HomeCardState State { get; }

    HomeCardStatus GetStatus();

    /// <summary>PIN1: Locked → RemoteAccessWait.</summary>
    PinResult EnterPin1(string pin);

    /// <summary>PIN2: RemoteAccessWait → CryptoReady.</summary>
    PinResult EnterPin2(string pin);

    /// <summary>The user's "done": CryptoReady → RemoteAccessWait.</summary>
    void Done();

    /// <summary>Back to Locked.</summary>
    void Lock();

    /// <summary>Resets the idle clock.</summary>
    void Touch();

    /// <summary>Picks up what other processes changed; true when readiness (or the state) changed.</summary>
    bool Refresh();

    /// <summary>The purse key as a COSE signer (money messages only).</summary>
    IMoneySigner OpenMoneySigner();

    System.Security.Cryptography.ECDsa PursePublicKey();

    /// <summary>The purse seal's counter kept beside the purse key (null before the first seal); needs CryptoReady.</summary>
    long? ReadPurseCounter();

    /// <summary>Moves the purse seal's counter forward; needs CryptoReady.</summary>
    void AdvancePurseCounter(long value);
}
