"""MQTT 5 features seen by a client: properties, subscription ids, topic aliases, flow control,
packet size, assigned ids, server keepalive, no-local, request/response, reason codes."""

import time

import pytest

from clients import PacketTypes, paho_connect, props, raw, raw_connect, uid
from mqttraw import DISCONNECT, PUBACK, PUBLISH, PUBREC, ConnectionClosed, encode_publish, sub_options

FULL_PROPS = {
    "PayloadFormatIndicator": 1,
    "ContentType": "application/json",
    "ResponseTopic": "reply/here",
    "CorrelationData": b"\x00\x01corr\xff",
    "UserProperty": [("a", "1"), ("b", "2"), ("a", "3")],
}


def test_publish_properties_passed_through(broker):
    t = uid("props")
    sub = raw_connect(broker)
    sub.subscribe(t, 1)
    pub = raw_connect(broker)
    pub.publish(t, b'{"x":1}', qos=1, props=FULL_PROPS)
    p = sub.recv_publish()
    assert p.payload == b'{"x":1}'
    for k, v in FULL_PROPS.items():
        assert p.props.get(k) == v, k
    # user property order (and duplicates) are preserved [MQTT-3.3.2-18]


def test_publish_properties_seen_by_paho(broker):
    t = uid("pprops")
    sub = paho_connect(broker)
    sub.subscribe(t, 1)
    pub = paho_connect(broker)
    pub.publish(t, b"hi", 1, properties=props(PacketTypes.PUBLISH, ContentType="text/plain",
                                              UserProperty=[("k", "v")], CorrelationData=b"c1"))
    m = sub.recv()
    assert m.properties.ContentType == "text/plain"
    assert m.properties.UserProperty == [("k", "v")]
    assert m.properties.CorrelationData == b"c1"
    sub.close()
    pub.close()


def test_subscription_identifiers(broker):
    base = uid("sid")
    c = raw_connect(broker)
    c.subscribe([(f"{base}/+", 1)], props={"SubscriptionIdentifier": 5})
    c.subscribe([(f"{base}/#", 1)], props={"SubscriptionIdentifier": 700})
    c.subscribe([(f"{base}/plain", 1)])  # no identifier
    pub = raw_connect(broker)

    pub.publish(f"{base}/a/b", b"deep", qos=1)  # only matches '#'
    p = c.recv_publish()
    assert p.props.get("SubscriptionIdentifier") == [700]

    pub.publish(f"{base}/x", b"both", qos=1)  # matches '+' and '#'
    copies = [c.recv_publish()] + c.collect(0.4, PUBLISH)
    ids = sorted(i for p in copies for i in p.props.get("SubscriptionIdentifier", []))
    assert ids == [5, 700], copies  # one copy with both ids, or one copy per subscription
    for p in copies:
        c.ack(p)
        assert p.props.get("SubscriptionIdentifier"), p

    pub.publish(f"{base}/plain", b"p", qos=1)  # matches '+', '#' and the plain one
    copies = [c.recv_publish()] + c.collect(0.4, PUBLISH)
    ids = sorted(i for p in copies for i in p.props.get("SubscriptionIdentifier", []))
    assert ids == [5, 700], copies


def test_topic_alias_client_to_server(broker):
    t = uid("alias")
    sub = raw_connect(broker)
    sub.subscribe(t, 1)
    pub = raw_connect(broker)
    assert pub.connack.props.get("TopicAliasMaximum", 0) >= 1, "broker advertises no topic aliases"
    pub.publish(t, b"1", qos=1, props={"TopicAlias": 1})
    pub.publish("", b"2", qos=1, props={"TopicAlias": 1})
    pub.publish("", b"3", qos=1, props={"TopicAlias": 1})
    got = sub.recv_publishes(3)
    assert [(p.topic, p.payload) for p in got] == [(t, b"1"), (t, b"2"), (t, b"3")]
    assert all("TopicAlias" not in p.props for p in got)  # the subscriber did not allow aliases


def test_topic_alias_can_be_remapped(broker):
    t1, t2 = uid("remap1"), uid("remap2")
    sub = raw_connect(broker)
    sub.subscribe([(t1, 1), (t2, 1)])
    pub = raw_connect(broker)
    pub.publish(t1, b"a", qos=1, props={"TopicAlias": 1})
    pub.publish(t2, b"b", qos=1, props={"TopicAlias": 1})
    pub.publish("", b"c", qos=1, props={"TopicAlias": 1})
    got = sub.recv_publishes(3)
    assert [(p.topic, p.payload) for p in got] == [(t1, b"a"), (t2, b"b"), (t2, b"c")]


@pytest.mark.broker_config(max_topic_alias=10)
def test_topic_alias_above_maximum_is_disconnect_0x94(broker):
    pub = raw_connect(broker)
    assert pub.connack.props.get("TopicAliasMaximum") == 10
    pub.send(encode_publish(uid("bad"), b"x", qos=1, pid=1, props={"TopicAlias": 11}))
    got = pub.wait_closed(5)
    # 0x94 Topic Alias invalid: "greater than the Maximum Topic Alias it sent"
    assert [(p.type, p.rc) for p in got] == [(DISCONNECT, 0x94)]


def test_topic_alias_zero_is_rejected(broker):
    """Alias 0 is not permitted [MQTT-3.3.2-8]: DISCONNECT 0x82 Protocol Error (Junction),
    0x81 Malformed (Mosquitto) or 0x94."""
    pub = raw_connect(broker)
    pub.send(encode_publish(uid("bad"), b"x", qos=1, pid=1, props={"TopicAlias": 0}))
    got = pub.wait_closed(5)
    assert len(got) == 1 and got[0].type == DISCONNECT and got[0].rc in (0x81, 0x82, 0x94), got


def test_unknown_topic_alias_is_protocol_error(broker):
    """An empty topic with an alias that has no mapping is a Protocol Error: DISCONNECT 0x82 (or 0x94)."""
    pub = raw_connect(broker)
    pub.send(encode_publish("", b"x", qos=1, pid=1, props={"TopicAlias": 1}))
    got = pub.wait_closed(5)
    assert len(got) == 1 and got[0].type == DISCONNECT and got[0].rc in (0x82, 0x94), got


def test_topic_alias_server_to_client(broker):
    base = uid("salias")
    sub = raw_connect(broker, props={"TopicAliasMaximum": 2})
    sub.subscribe(f"{base}/#", 1)
    pub = raw_connect(broker)
    topics = [f"{base}/one", f"{base}/two", f"{base}/three"]
    sent = [(topics[i % 3], str(i).encode()) for i in range(12)]
    for t, payload in sent:
        pub.publish(t, payload, qos=1)
    aliases: dict[int, str] = {}
    got = []
    for p in sub.recv_publishes(len(sent)):
        alias = p.props.get("TopicAlias")
        if alias is not None:
            assert 1 <= alias <= 2, f"alias {alias} above the client's Topic Alias Maximum"
            if p.topic:
                aliases[alias] = p.topic
            else:
                assert alias in aliases, f"alias {alias} used before it was set"
        topic = p.topic or aliases[alias]
        got.append((topic, p.payload))
    assert got == sent


def test_receive_maximum_flow_control(broker):
    t = uid("rmax")
    sub = raw_connect(broker, props={"ReceiveMaximum": 1})
    sub.subscribe(t, 1)
    pub = raw_connect(broker)
    for i in range(3):
        pub.publish(t, f"m{i}".encode(), qos=1)
    for i in range(3):
        p = sub.recv_publish(ack=False)
        assert p.payload == f"m{i}".encode()
        sub.expect_nothing(0.5)  # no second QoS 1 message while one is unacknowledged
        sub.ack(p)
    sub.expect_nothing(0.3)


def test_receive_maximum_does_not_limit_qos0(broker):
    t = uid("rmax0")
    sub = raw_connect(broker, props={"ReceiveMaximum": 1})
    sub.subscribe([(t, 1), (t + "/0", 0)])
    pub = raw_connect(broker)
    pub.publish(t, b"held", qos=1)
    p = sub.recv_publish(ack=False)
    pub.publish(t + "/0", b"q0", qos=0)
    assert sub.recv_publish().payload == b"q0"
    sub.ack(p)


def test_client_maximum_packet_size(broker):
    t = uid("mps")
    small = raw_connect(broker, props={"MaximumPacketSize": 100})
    small.subscribe(t, 1)
    big = raw_connect(broker)
    big.subscribe(t, 1)
    pub = raw_connect(broker)
    pub.publish(t, b"x" * 200, qos=1)
    pub.publish(t, b"fits", qos=1)
    assert small.recv_publish().payload == b"fits"  # the large one is skipped, not sent
    small.expect_nothing(0.3)
    assert [p.payload for p in big.recv_publishes(2)] == [b"x" * 200, b"fits"]
    small.ping()  # still connected


def test_assigned_client_identifier(broker):
    c = raw(broker)
    ack = c.connect("")
    assert ack.rc == 0
    assigned = ack.props.get("AssignedClientIdentifier")
    assert assigned, ack
    c2 = raw(broker)
    other = c2.connect("").props.get("AssignedClientIdentifier")
    assert other and other != assigned
    # the assigned id is a normal session: connecting with it takes over
    c3 = raw_connect(broker, assigned)
    c.wait_closed(5)
    c3.ping()


def test_assigned_client_identifier_with_paho(broker):
    p = paho_connect(broker, client_id="")
    assert p.connack[2].AssignedClientIdentifier
    p.close()


@pytest.mark.broker_config(server_keepalive=10)  # Mosquitto's max_keepalive must be >= 10
def test_server_keep_alive_when_configured(broker):
    c = raw_connect(broker, keepalive=60)
    assert c.connack.props.get("ServerKeepAlive") == 10


def test_no_local(broker):
    t = uid("nolocal")
    me = raw_connect(broker)
    me.subscribe([(t, sub_options(qos=1, no_local=True))])
    other = raw_connect(broker)
    other.subscribe(t, 1)
    me.publish(t, b"mine", qos=1)
    assert other.recv_publish().payload == b"mine"
    me.expect_nothing(0.5)
    other.publish(t, b"theirs", qos=1)
    assert me.recv_publish().payload == b"theirs"


def test_request_response_information(broker):
    c = raw_connect(broker, props={"RequestResponseInformation": 0})
    assert "ResponseInformation" not in c.connack.props  # [MQTT-3.1.2-29]
    c = raw_connect(broker, props={"RequestResponseInformation": 1})
    assert isinstance(c.connack.props.get("ResponseInformation", ""), str)


def test_request_response_pattern(broker):
    req_t, resp_t = uid("req"), uid("resp")
    responder = raw_connect(broker)
    responder.subscribe(req_t, 1)
    requester = raw_connect(broker)
    requester.subscribe(resp_t, 1)
    requester.publish(req_t, b"ping?", qos=1, props={"ResponseTopic": resp_t, "CorrelationData": b"id-42"})
    req = responder.recv_publish()
    assert req.props["ResponseTopic"] == resp_t
    responder.publish(req.props["ResponseTopic"], b"pong!", qos=1,
                      props={"CorrelationData": req.props["CorrelationData"]})
    resp = requester.recv_publish()
    assert (resp.payload, resp.props.get("CorrelationData")) == (b"pong!", b"id-42")


def test_client_disconnect_can_shorten_session_expiry(broker):
    cid, t = uid("dexp"), uid("dexp")
    c = raw_connect(broker, cid, clean=False, props={"SessionExpiryInterval": 300})
    c.subscribe(t, 1)
    c.disconnect(rc=0x00, props={"SessionExpiryInterval": 0})  # ends the session now
    # The old connection's task handles the DISCONNECT concurrently with new connections
    # (a multi-threaded broker gives no order across connections): let it run first.
    time.sleep(0.2)
    raw_connect(broker).publish(t, b"x", qos=1)
    c = raw_connect(broker, cid, clean=False, props={"SessionExpiryInterval": 300})
    assert not c.connack.session_present
    c.expect_nothing(0.4)


@pytest.mark.mosquitto_differs("Mosquitto 2.0.11 discards the will on any DISCONNECT reason but 0x04; "
                               "the spec discards it only on 0x00 [MQTT-3.14.4-3]")
def test_client_disconnect_with_error_reason_is_accepted(broker):
    t = uid("drc")
    o = raw_connect(broker)
    o.subscribe(t, 1)
    c = raw_connect(broker, will={"topic": t, "payload": b"will", "qos": 1})
    c.disconnect(rc=0x80, props={"ReasonString": "client gave up"})  # unspecified error
    assert o.recv_publish(5).payload == b"will"  # any reason but 0x00 publishes the will
    o.ping()


@pytest.mark.parametrize("qos", [1, 2])
def test_no_matching_subscribers_reason_code(broker, qos):
    c = raw_connect(broker)
    ack = c.publish(uid("nobody"), b"x", qos=qos)
    assert ack.type == (PUBACK if qos == 1 else 7)
    if qos == 1:
        assert ack.rc in (0x00, 0x10)  # Success or No matching subscribers
    c.ping()


def test_qos2_pubrec_no_matching_subscribers(broker):
    c = raw_connect(broker)
    c.send(encode_publish(uid("nobody2"), b"x", qos=2, pid=7))
    rec = c.recv_until(PUBREC)
    assert (rec.pid, rec.rc in (0x00, 0x10)) == (7, True)


def test_publish_to_wildcard_topic_is_rejected(broker):
    """A PUBLISH topic with wildcards is invalid [MQTT-3.3.2-2]: PUBACK 0x90, or DISCONNECT with
    0x90 (Topic Name invalid), 0x81 (Malformed) or 0x82 (Protocol Error, Mosquitto's choice)."""
    sub = raw_connect(broker)
    sub.subscribe("#", 1)
    c = raw_connect(broker)
    c.send(encode_publish("bad/+/topic", b"x", qos=1, pid=3))
    try:
        p = c.recv(5)
    except ConnectionClosed:
        p = None
    if p is not None and p.type == PUBACK:
        assert p.rc == 0x90, p
    elif p is not None:
        assert p.type == DISCONNECT and p.rc in (0x90, 0x81, 0x82), p
    sub.expect_nothing(0.3)  # never delivered


def test_connack_reports_capabilities(broker):
    c = raw_connect(broker)
    ack = c.connack
    assert ack.rc == 0
    # defaults when absent: retain, wildcard, subscription ids and shared subs available
    for prop in ("RetainAvailable", "WildcardSubscriptionAvailable", "SubscriptionIdentifierAvailable",
                 "SharedSubscriptionAvailable"):
        assert ack.props.get(prop, 1) == 1, prop
    assert ack.props.get("MaximumQoS", 2) == 2
