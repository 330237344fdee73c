using System.Formats.Cbor;
using Daiko.Protocol.Messages;
using Daiko.Protocol.Wire;

namespace Daiko.Protocol.Tests;

/// <summary>Every control message: a round trip, every truncated prefix, every field with a wrong type.</summary>
public sealed class ControlFrameTests
{
    public static TheoryData<string> Messages => SampleMessages.Names();

    [Fact]
    public void EveryMessageType_HasASample()
    {
        var types = typeof(ControlMessage).Assembly.GetTypes()
            .Where(t => t is { IsAbstract: false } && t.IsSubclassOf(typeof(ControlMessage))).Select(t => t.Name).Order();
        Assert.Equal(types, SampleMessages.All().Select(m => m.GetType().Name).Order());
    }

    [Theory]
    [MemberData(nameof(Messages))]
    public void RoundTrip_GivesTheSameMessage(string name)
    {
        var message = SampleMessages.Named(name);
        var body = ControlFrame.EncodeBody(41, message);

        var decoded = ControlFrame.Decode(body);

        Assert.Equal(41, decoded.Id);
        Assert.IsType(message.GetType(), decoded.Message);
        Assert.Equal(message.IsReply, decoded.Message.IsReply);
        Assert.Equal(body, ControlFrame.EncodeBody(41, decoded.Message));
    }

    [Fact]
    public void RoundTrip_KeepsTheValues()
    {
        var unlock = Assert.IsType<UnlockRequest>(ControlFrame.Decode(ControlFrame.EncodeBody(3, new UnlockRequest("1111", "2222"))).Message);
        Assert.Equal(("1111", "2222"), (unlock.Pin1, unlock.Pin2));
        var ticket = Assert.IsType<TicketReply>(ControlFrame.Decode(ControlFrame.EncodeBody(5, new TicketReply(SampleMessages.Ticket()))).Message).Ticket;
        Assert.Equal(("market.example", "http/1.1", 7200u, 12345u, 16384u), (ticket.ServerName, ticket.Alpn, ticket.LifetimeSeconds, ticket.AgeAdd, ticket.MaxEarlyData));
        var error = Assert.IsType<ErrorReply>(ControlFrame.Decode(ControlFrame.EncodeBody(7, new ErrorReply(ErrorCode.WrongPin2, "wrong", 2))).Message);
        Assert.Equal((ErrorCode.WrongPin2, "wrong-pin2", 2), (error.Code, error.CodeName, error.TriesLeft));
    }

    [Fact]
    public void APimSyncsHorizonAndReset_GoOverWhenSet_AndAreLeftOutWhenNot()
    {
        var request = Assert.IsType<PimSyncRequest>(ControlFrame.Decode(ControlFrame.EncodeBody(3, new PimSyncRequest(9, [], Horizon: 7))).Message);
        Assert.Equal((9L, (long?)7L), (request.Since, request.Horizon));
        // Absent is not 0: a terminal from before horizons, never told of a reset it could not act on.
        Assert.Null(Assert.IsType<PimSyncRequest>(ControlFrame.Decode(ControlFrame.EncodeBody(3, new PimSyncRequest(9, []))).Message).Horizon);
        Assert.Equal(0L, Assert.IsType<PimSyncRequest>(ControlFrame.Decode(ControlFrame.EncodeBody(3, new PimSyncRequest(9, [], Horizon: 0))).Message).Horizon);
        var reply = Assert.IsType<PimSyncedReply>(ControlFrame.Decode(ControlFrame.EncodeBody(4,
            new PimSyncedReply(12, [], [new PimEntry("c2", PimEntryKind.Event, 1, false, "{}")], More: true, Horizon: 7, Reset: true))).Message);
        Assert.Equal((12L, true, 7L, true), (reply.Revision, reply.More, reply.Horizon, reply.Reset));
        // Unset, they cost nothing: a terminal or home server from before them reads the same bytes as ever.
        Assert.DoesNotContain("horizon", System.Text.Encoding.Latin1.GetString(ControlFrame.EncodeBody(3, new PimSyncRequest(9, [])).ToArray()), StringComparison.Ordinal);
        var plainBody = System.Text.Encoding.Latin1.GetString(ControlFrame.EncodeBody(4, new PimSyncedReply(12, [], [])).ToArray());
        Assert.False(plainBody.Contains("horizon", StringComparison.Ordinal) || plainBody.Contains("reset", StringComparison.Ordinal));
        var plain = Assert.IsType<PimSyncedReply>(ControlFrame.Decode(ControlFrame.EncodeBody(4, new PimSyncedReply(12, [], []))).Message);
        Assert.Equal((0L, false), (plain.Horizon, plain.Reset));
        Assert.Throws<ProtocolException>(() => ControlFrame.Decode(ControlFrame.EncodeBody(3, new PimSyncRequest(9, [], Horizon: -1))));
    }

    [Fact]
    public void ATicketsPskKeHint_GoesOverOnlyWhenSet_AndCostsNothingWhenNot()
    {
        var plain = SampleMessages.Ticket();
        var hinted = SampleMessages.Ticket();
        hinted.MarketAcceptsPskKe = true;

        var plainBody = ControlFrame.EncodeBody(5, new TicketReply(plain));
        var hintedBody = ControlFrame.EncodeBody(5, new TicketReply(hinted));

        Assert.False(Assert.IsType<TicketReply>(ControlFrame.Decode(plainBody).Message).Ticket.MarketAcceptsPskKe);
        Assert.True(Assert.IsType<TicketReply>(ControlFrame.Decode(hintedBody).Message).Ticket.MarketAcceptsPskKe);
        var stocked = Assert.IsType<StockedReply>(ControlFrame.Decode(ControlFrame.EncodeBody(6, new StockedReply([hinted, plain], 0))).Message);
        Assert.Equal([true, false], stocked.Tickets.Select(t => t.MarketAcceptsPskKe));
        // The unset hint is left out (no byte more than before it existed), the set one is a "psk_ke": true pair.
        Assert.Equal(plainBody.Length + "psk_ke".Length + 2, hintedBody.Length);
    }

    [Fact]
    public void ASignRequestsTranscript_IsOptional_KeptWhenSent_AndBounded()
    {
        var without = ControlFrame.EncodeBody(5, new SignRequest(Daiko.Tls.SignatureScheme.EcdsaSecp256r1Sha256, new byte[130]));
        Assert.Null(Assert.IsType<SignRequest>(ControlFrame.Decode(without).Message).Transcript);
        Assert.True(without.AsSpan().IndexOf("transcript"u8) < 0, "an absent transcript costs no bytes");

        var transcript = new byte[ControlProtocol.MaxSignTranscriptBytes];
        transcript[^1] = 7;
        var sent = Assert.IsType<SignRequest>(ControlFrame.Decode(ControlFrame.EncodeBody(6, new SignRequest(Daiko.Tls.SignatureScheme.EcdsaSecp256r1Sha256, new byte[130], transcript))).Message);
        Assert.Equal(transcript, sent.Transcript);

        var e = Assert.Throws<ProtocolException>(() => ControlFrame.Decode(ControlFrame.EncodeBody(7, new SignRequest(Daiko.Tls.SignatureScheme.EcdsaSecp256r1Sha256, new byte[130], new byte[ControlProtocol.MaxSignTranscriptBytes + 1]))));
        Assert.Equal((ErrorCode.BadRequest, "transcript"), (e.Code, e.Field));
    }

    [Fact]
    public void ToString_NeverPrintsFields()
    {
        Assert.Equal("unlock", new UnlockRequest("1111", "2222").ToString());
        // The secret's value, not the word "secret": a printed field would read "Secret = ABCDEFGHJKMN".
        var enroll = new EnrollRequest("ABCDEFGHJKMN", [1]).ToString();
        Assert.DoesNotContain("ABCDEFGHJKMN", enroll, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(EnrollRequest.WireType, enroll);
    }

    [Theory]
    [MemberData(nameof(Messages))]
    public void ToString_OfEveryMessage_IsItsTypeAlone(string name)
    {
        var message = SampleMessages.Named(name);
        Assert.Equal(message.Type, message.ToString());
    }

    [Theory]
    [MemberData(nameof(Messages))]
    public void EveryTruncatedPrefix_IsABadRequestNamingAField(string name)
    {
        var body = ControlFrame.EncodeBody(41, SampleMessages.Named(name));
        for (var n = 0; n < body.Length; n++)
        {
            var e = Assert.Throws<ProtocolException>(() => ControlFrame.Decode(body.AsMemory(0, n)));
            Assert.Equal(ErrorCode.BadRequest, e.Code);
            Assert.False(string.IsNullOrEmpty(e.Field), $"prefix of {n} bytes: '{e.Message}' names no field");
        }
    }

    [Theory]
    [MemberData(nameof(Messages))]
    public void EveryFieldWithAWrongType_IsABadRequestNamingThatField(string name)
    {
        var body = ControlFrame.EncodeBody(41, SampleMessages.Named(name));
        var entries = Entries(body);
        foreach (var (key, value) in entries)
        {
            var mutated = Rebuild(entries, key, WrongTypeFor(value));

            var e = Assert.Throws<ProtocolException>(() => ControlFrame.Decode(mutated));

            Assert.Equal(ErrorCode.BadRequest, e.Code);
            Assert.Equal(key, e.Field);
            if (key is not ("t" or "id" or "re")) Assert.Equal(41, e.RequestId);
        }
    }

    [Fact]
    public void OutOfRangeValues_AreBadRequestsNamingTheField()
    {
        var body = ControlFrame.EncodeBody(5, new DelegateRequest(new MarketAddress("m", 443, null, null), DelegationMode.Resume));
        var entries = Entries(body);
        var cases = new (string Field, byte[] Value)[]
        {
            ("port", Encode(w => w.WriteInt64(70000))),
            ("port", Encode(w => w.WriteInt64(0))),
            ("mode", Encode(w => w.WriteTextString("teleport"))),
            ("host", Encode(w => w.WriteTextString(""))),
            ("host", Encode(w => w.WriteTextString(new string('a', 300)))),
        };
        foreach (var (field, value) in cases)
        {
            var e = Assert.Throws<ProtocolException>(() => ControlFrame.Decode(Rebuild(entries, field, value)));
            Assert.Equal((ErrorCode.BadRequest, field), (e.Code, e.Field));
        }
        var prefetch = Entries(ControlFrame.EncodeBody(5, new PrefetchRequest(new MarketAddress("m", 443, null, null), 1)));
        Assert.Equal("min", Assert.Throws<ProtocolException>(() => ControlFrame.Decode(Rebuild(prefetch, "min", Encode(w => w.WriteInt64(9))))).Field);
        var data = Entries(ControlFrame.EncodeBody(0, new RelayData(1, new byte[] { 1 })));
        Assert.Equal("data", Assert.Throws<ProtocolException>(() => ControlFrame.Decode(Rebuild(data, "data", Encode(w => w.WriteByteString(new byte[ControlProtocol.MaxRelayChunk + 1]))))).Field);
    }

    [Fact]
    public void AnUnknownRequest_IsUnknownRequest_AndAMissingFieldIsNamed()
    {
        var unknown = Rebuild(Entries(ControlFrame.EncodeBody(5, new LockRequest())), "t", Encode(w => w.WriteTextString("self-destruct")));
        var e = Assert.Throws<ProtocolException>(() => ControlFrame.Decode(unknown));
        Assert.Equal((ErrorCode.UnknownRequest, 5L), (e.Code, e.RequestId));

        var entries = Entries(ControlFrame.EncodeBody(5, new UnlockRequest("1", "2"))).Where(p => p.Key != "pin2").ToList();
        var missing = Assert.Throws<ProtocolException>(() => ControlFrame.Decode(Rebuild(entries, "", [])));
        Assert.Equal((ErrorCode.BadRequest, "pin2"), (missing.Code, missing.Field));
    }

    [Fact]
    public void Fresh_IsSentOnlyWhenSet_ReadAsFalseWhenAbsent_AndMustBeABoolean()
    {
        var plain = Entries(ControlFrame.EncodeBody(5, new DelegateRequest(new MarketAddress("m", 443, null, null), DelegationMode.Resume)));
        var fresh = Entries(ControlFrame.EncodeBody(5, new DelegateRequest(new MarketAddress("m", 443, null, null), DelegationMode.Resume, Fresh: true)));

        Assert.DoesNotContain(plain, p => p.Key == "fresh");
        Assert.False(Assert.IsType<DelegateRequest>(ControlFrame.Decode(Rebuild(plain, "", [])).Message).Fresh);
        Assert.True(Assert.IsType<DelegateRequest>(ControlFrame.Decode(Rebuild(fresh, "", [])).Message).Fresh);
        var e = Assert.Throws<ProtocolException>(() => ControlFrame.Decode(Rebuild(fresh, "fresh", Encode(w => w.WriteTextString("yes")))));
        Assert.Equal((ErrorCode.BadRequest, "fresh"), (e.Code, e.Field));
    }

    [Theory]
    [InlineData("host", "evil.example\0.shop.example")]
    [InlineData("host", "shop.example\naudit forged")]
    [InlineData("host", "shop.example/path")]
    [InlineData("host", "user@shop.example")]
    [InlineData("host", "shop example")]
    [InlineData("sni", "evil.example\0.shop.example")]
    [InlineData("sni", "shop.example\r\n")]
    [InlineData("host", "elpmaxe\u202E.shop.example")]
    [InlineData("host", "shop.example\u2028")]
    [InlineData("host", "shop\u061C.example")]
    public void AMarketNameWithAControlCharacterOrAUrlDelimiter_IsRefused_NamingTheField(string field, string name)
    {
        var entries = Entries(ControlFrame.EncodeBody(5, new DelegateRequest(new MarketAddress("shop.example", 443, "shop.example", null), DelegationMode.Resume)));

        var e = Assert.Throws<ProtocolException>(() => ControlFrame.Decode(Rebuild(entries, field, Encode(w => w.WriteTextString(name)))));

        Assert.Equal((ErrorCode.BadRequest, field), (e.Code, e.Field));
        Assert.DoesNotContain(name, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AVerifyChainHostWithANul_IsRefused_NamingTheField()
    {
        var entries = Entries(ControlFrame.EncodeBody(5, new VerifyChainRequest("shop.example", [[1, 2, 3]])));

        var e = Assert.Throws<ProtocolException>(() => ControlFrame.Decode(Rebuild(entries, "host", Encode(w => w.WriteTextString("evil.example\0.shop.example")))));

        Assert.Equal((ErrorCode.BadRequest, "host"), (e.Code, e.Field));
    }

    [Theory]
    [InlineData("shop.example")]
    [InlineData("127.0.0.1")]
    [InlineData("[::1]")]
    [InlineData("bücher.example")]
    [InlineData("xn--bcher-kva.example.")]
    public void AMarketName_OrAddress_IsRead_AsSent(string host)
    {
        var decoded = ControlFrame.Decode(Rebuild(Entries(ControlFrame.EncodeBody(5, new PrefetchRequest(new MarketAddress(host, 443, null, null), 2))), "", []));

        Assert.Equal(host, Assert.IsType<PrefetchRequest>(decoded.Message).Market.Host);
    }

    [Fact]
    public void UnknownFields_AreIgnored_SoNewerPeersCanAddThem()
    {
        var entries = Entries(ControlFrame.EncodeBody(5, new DelegateRequest(new MarketAddress("m", 443, null, null), DelegationMode.Resume)));
        entries.Add(new("kex", Encode(w => w.WriteTextString("psk_dhe_ke"))));

        var decoded = Assert.IsType<DelegateRequest>(ControlFrame.Decode(Rebuild(entries, "", [])).Message);

        Assert.Equal(DelegationMode.Resume, decoded.Mode);
    }

    [Fact]
    public void TrailingBytes_AndOversizedFrames_AreRefused()
    {
        var body = ControlFrame.EncodeBody(5, new LockRequest());
        Assert.Throws<ProtocolException>(() => ControlFrame.Decode(body.Append((byte)0).ToArray()));
        var frame = new byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(frame, ControlProtocol.MaxFrameBytes + 1);
        Assert.ThrowsAsync<ProtocolException>(async () => await ControlFrame.ReadAsync(new MemoryStream(frame), new byte[4], CancellationToken.None)).GetAwaiter().GetResult();
    }

    internal static List<KeyValuePair<string, byte[]>> Entries(byte[] body)
    {
        var r = new CborReader(body);
        var count = r.ReadStartMap()!.Value;
        var entries = new List<KeyValuePair<string, byte[]>>();
        for (var i = 0; i < count; i++) entries.Add(new(r.ReadTextString(), r.ReadEncodedValue().ToArray()));
        return entries;
    }

    /// <summary>The map of <paramref name="entries"/> with <paramref name="key"/>'s value replaced.</summary>
    internal static byte[] Rebuild(IReadOnlyList<KeyValuePair<string, byte[]>> entries, string key, byte[] value)
    {
        var w = new CborWriter();
        w.WriteStartMap(entries.Count);
        foreach (var (k, v) in entries)
        {
            w.WriteTextString(k);
            w.WriteEncodedValue(k == key ? value : v);
        }
        w.WriteEndMap();
        return w.Encode();
    }

    private static byte[] Encode(Action<CborWriter> write)
    {
        var w = new CborWriter();
        write(w);
        return w.Encode();
    }

    /// <summary>A value of another CBOR type than <paramref name="value"/>'s.</summary>
    private static byte[] WrongTypeFor(byte[] value) => new CborReader(value).PeekState() switch
    {
        CborReaderState.TextString => Encode(w => w.WriteInt64(7)),
        CborReaderState.UnsignedInteger or CborReaderState.NegativeInteger => Encode(w => w.WriteTextString("seven")),
        CborReaderState.Boolean => Encode(w => w.WriteInt64(1)),
        CborReaderState.ByteString => Encode(w => w.WriteTextString("bytes")),
        CborReaderState.StartArray => Encode(w => w.WriteInt64(3)),
        CborReaderState.Null => Encode(w => w.WriteInt64(0)),
        var other => throw new InvalidOperationException($"no wrong type for {other}"),
    };
}
