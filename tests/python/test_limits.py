"""Limits and bad input: packet size, client id length, keepalive, connection count, malformed
packets, offline queue length (with the drop counter in /metrics)."""

import struct
import time

import pytest

from clients import V5, V311, metrics, raw, raw_connect, uid
from mqttraw import (CONNACK, DISCONNECT, PUBLISH, ConnectionClosed, encode_connect, encode_publish,
                     mqtt_str, packet, varint)


@pytest.mark.broker_config(max_packet_size=1024)
def test_packet_too_large_gets_disconnect_0x95(broker):
    c = raw_connect(broker)
    assert c.connack.props.get("MaximumPacketSize") == 1024
    other = raw_connect(broker)
    t = uid("big")
    other.subscribe(t, 1)
    c.send(encode_publish(t, b"x" * 2000, qos=1, pid=1))
    got = c.wait_closed(5)
    assert [(p.type, p.rc) for p in got] == [(DISCONNECT, 0x95)]
    # a packet within the limit from another client still works
    raw_connect(broker).publish(t, b"y" * 500, qos=1)
    assert other.recv_publish().payload == b"y" * 500
    other.expect_nothing(0.2)


@pytest.mark.junction_only
@pytest.mark.broker_config(max_clientid_len=23)  # 23 is the smallest value Junction accepts
@pytest.mark.parametrize("version,rc", [(V5, 0x85), (V311, 0x02)], ids=["v5", "v311"])
def test_client_id_too_long(broker, version, rc):
    c = raw(broker, version)
    assert c.connect("x" * 24).rc == rc
    c.wait_closed(5)
    ok = raw(broker, version)
    assert ok.connect("y" * 23).rc == 0


@pytest.mark.broker_config(server_keepalive=10)
@pytest.mark.parametrize("requested", [0, 60])
def test_server_keepalive_overrides_client(broker, requested):
    c = raw_connect(broker, keepalive=requested)
    assert c.connack.props.get("ServerKeepAlive") == 10


@pytest.mark.broker_config(max_keepalive=10)
def test_max_keepalive_lowers_larger_requests(broker):
    assert raw_connect(broker, keepalive=60).connack.props.get("ServerKeepAlive") == 10
    # a request within the bound is kept: no Server Keep Alive, or the same value
    assert raw_connect(broker, keepalive=5).connack.props.get("ServerKeepAlive", 5) == 5


@pytest.mark.junction_only
@pytest.mark.broker_config(min_keepalive=5)
def test_min_keepalive_raises_smaller_requests(broker):
    assert raw_connect(broker, keepalive=1).connack.props.get("ServerKeepAlive") == 5
    assert raw_connect(broker, keepalive=30).connack.props.get("ServerKeepAlive", 30) == 30


@pytest.mark.junction_only
@pytest.mark.broker_config(server_keepalive=1)
def test_server_keepalive_is_enforced(broker):
    c = raw_connect(broker, keepalive=60)
    assert c.connack.props.get("ServerKeepAlive") == 1
    start = time.monotonic()
    got = c.wait_closed(5)
    elapsed = time.monotonic() - start
    assert 1.0 <= elapsed <= 3.5, elapsed
    assert [(p.type, p.rc) for p in got] in ([], [(DISCONNECT, 0x8D)])


@pytest.mark.broker_config(max_connections=2)
@pytest.mark.parametrize("version", [V5, V311], ids=["v5", "v311"])
def test_max_connections(broker, version):
    a = raw_connect(broker)
    b = raw_connect(broker)
    refused = False
    try:
        c = raw(broker, version)
        ack = c.connect(uid("third"), timeout=3)
        # a CONNACK, if any, must be a refusal: Server busy / Quota exceeded (v5) or Server unavailable (3.1.1)
        assert ack.rc in ((0x89, 0x97, 0x9F) if version == V5 else (0x03,)), ack
        refused = True
        c.wait_closed(5)
    except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
        refused = True  # closed before or instead of CONNACK
    assert refused
    # existing connections are unaffected
    a.ping()
    b.ping()
    # a freed slot can be used again
    a.disconnect()
    deadline = time.monotonic() + 5
    while True:
        try:
            d = raw(broker)
            if d.connect(uid("again"), timeout=2).rc == 0:
                break
        except (ConnectionClosed, OSError):
            pass
        assert time.monotonic() < deadline, "slot not freed after a client disconnected"
        time.sleep(0.2)


def malformed_publish() -> bytes:
    # topic length says 200 bytes but the packet holds 5
    body = struct.pack("!H", 200) + b"short"
    return packet(PUBLISH, 0, body)


@pytest.mark.parametrize("kind", ["bad-length", "qos3", "reserved-flags", "bad-utf8"])
def test_malformed_packet_closes_only_that_connection(broker, kind):
    t = uid("mal")
    sub = raw_connect(broker)
    sub.subscribe(t, 1)
    c = raw_connect(broker)
    if kind == "bad-length":
        c.send(malformed_publish())
    elif kind == "qos3":
        c.send(bytes([0x36]) + varint(len(mqtt_str(t)) + 3) + mqtt_str(t) + b"\x00\x01\x00")
    elif kind == "reserved-flags":  # SUBSCRIBE must have flags 0b0010
        body = struct.pack("!H", 1) + b"\x00" + mqtt_str(t) + b"\x01"
        c.send(packet(8, 0x00, body))
    else:
        c.send(encode_publish(b"bad\xff\xfeutf8", b"x", qos=0))
    got = c.wait_closed(5)
    assert [p for p in got if p.type == PUBLISH] == []
    assert all(p.type == DISCONNECT for p in got), got
    # nothing leaked to subscribers; other clients carry on
    pub = raw_connect(broker)
    pub.publish(t, b"fine", qos=1)
    assert sub.recv_publish().payload == b"fine"


def test_malformed_packet_gets_disconnect_0x81(broker):
    c = raw_connect(broker)
    c.send(malformed_publish())
    got = c.wait_closed(5)
    assert [(p.type, p.rc) for p in got] == [(DISCONNECT, 0x81)]


def test_first_packet_must_be_connect(broker):
    c = raw(broker)
    c.send(encode_publish("t", b"x"))
    assert [p for p in c.wait_closed(5) if p.type == CONNACK and p.rc == 0] == []


@pytest.mark.parametrize("level,rc", [(6, 0x01), (2, 0x01)])
def test_unsupported_protocol_version(broker, level, rc):
    c = raw(broker, V311)
    data = bytearray(encode_connect(uid("lvl"), V311))
    # fixed header (2 bytes) + "MQTT" string (6 bytes) then the protocol level byte
    data[8] = level
    c.send(bytes(data))
    got = c.wait_closed(5)
    assert [(p.type, p.rc) for p in got] in ([], [(CONNACK, rc)]), got


def test_second_connect_is_protocol_violation(broker):
    c = raw_connect(broker)
    c.send(encode_connect(uid("again")))
    got = c.wait_closed(5)
    assert [(p.type, p.rc) for p in got] in ([], [(DISCONNECT, 0x82)]), got


def queue_overflow(broker, n=10, limit=5):
    cid, t = uid("mq"), uid("mq")
    props = {"SessionExpiryInterval": 300}
    c = raw_connect(broker, cid, clean=False, props=props)
    c.subscribe(t, 1)
    c.disconnect()
    pub = raw_connect(broker)
    for i in range(n):
        pub.publish(t, f"m{i}".encode(), qos=1)
    c = raw_connect(broker, cid, clean=False, props=props)
    got = c.collect(1.0, PUBLISH)
    for p in got:
        c.ack(p)
    payloads = [p.payload for p in got]
    assert 1 <= len(payloads) <= limit, payloads
    assert len(set(payloads)) == len(payloads)
    return n - len(payloads)


@pytest.mark.broker_config(max_mqueue_len=5)
def test_offline_queue_is_bounded(broker):
    queue_overflow(broker)


@pytest.mark.junction_only
@pytest.mark.broker_config(max_mqueue_len=5)
def test_queue_drops_are_counted_in_metrics(broker):
    def dropped():
        return sum(v for k, v in metrics(broker).items() if "dropped" in k.split("{")[0])

    before = dropped()
    lost = queue_overflow(broker)
    assert lost >= 5
    deadline = time.monotonic() + 5
    while dropped() - before < lost:
        assert time.monotonic() < deadline, f"dropped metrics rose by {dropped() - before}, expected {lost}"
        time.sleep(0.2)
