"""Connect, publish and subscribe with real clients: paho (3.1.1, 5), mosquitto_pub/sub (3.1, 3.1.1, 5)."""

import pytest

from clients import (V5, V311, MosquittoSub, cli_available, mosquitto_pub, paho_connect, raw_connect, uid)
from mqttraw import PUBLISH, ConnectionClosed

needs_cli = pytest.mark.skipif(not cli_available(), reason="mosquitto_pub/mosquitto_sub not installed")


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_paho_pubsub_both_directions(broker, version, qos):
    a = paho_connect(broker, version=version)
    b = paho_connect(broker, version=version)
    base = uid("basic")
    try:
        assert a.subscribe(f"{base}/to-a", qos)[0] == qos
        assert b.subscribe(f"{base}/to-b", qos)[0] == qos
        a.publish(f"{base}/to-b", b"from a", qos)
        b.publish(f"{base}/to-a", b"from b", qos)
        mb = b.recv()
        ma = a.recv()
        assert (mb.topic, mb.payload, mb.qos) == (f"{base}/to-b", b"from a", qos)
        assert (ma.topic, ma.payload, ma.qos) == (f"{base}/to-a", b"from b", qos)
        a.expect_none(0.3)
        b.expect_none(0.3)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("sub_qos,pub_qos,expected", [(0, 2, 0), (1, 2, 1), (2, 1, 1), (2, 0, 0)])
def test_delivered_qos_is_min_of_subscription_and_publish(broker, sub_qos, pub_qos, expected):
    sub = paho_connect(broker)
    pub = paho_connect(broker, version=V311)
    t = uid("qos")
    try:
        sub.subscribe(t, sub_qos)
        pub.publish(t, b"x", pub_qos)
        m = sub.recv()
        assert m.qos == expected
    finally:
        sub.close()
        pub.close()


def test_many_messages_in_order(broker):
    sub = paho_connect(broker)
    pub = paho_connect(broker)
    t = uid("order")
    try:
        sub.subscribe(t, 1)
        for i in range(50):
            pub.publish(t, str(i).encode(), 1)
        got = [int(m.payload) for m in sub.recv_n(50)]
        assert got == list(range(50))
    finally:
        sub.close()
        pub.close()


def test_large_payload(broker):
    sub = paho_connect(broker)
    pub = paho_connect(broker)
    t = uid("large")
    payload = bytes(range(256)) * 1024  # 256 KiB
    try:
        sub.subscribe(t, 1)
        pub.publish(t, payload, 1)
        assert sub.recv().payload == payload
    finally:
        sub.close()
        pub.close()


@needs_cli
@pytest.mark.parametrize("cli_version", ["mqttv31", "mqttv311", "mqttv5"])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_cli_pub_to_sub(broker, cli_version, qos):
    topic = f"cli/{uid()}/x"
    sub = MosquittoSub(broker, topic, count=2, version=cli_version, qos=qos)
    for msg in ("hello", "world"):
        r = mosquitto_pub(broker, topic, msg, version=cli_version, qos=qos)
        assert r.returncode == 0, r.stderr + r.stdout
    rc, lines = sub.result()
    assert rc == 0, lines
    assert lines == [f"{topic} hello", f"{topic} world"]


@needs_cli
def test_mosquitto_cli_mixed_versions(broker):
    """A 3.1 publisher reaches a 5.0 subscriber and a 5.0 publisher reaches a 3.1 subscriber."""
    t1, t2 = f"cli/{uid()}", f"cli/{uid()}"
    s5 = MosquittoSub(broker, t1, 1, version="mqttv5")
    s31 = MosquittoSub(broker, t2, 1, version="mqttv31")
    assert mosquitto_pub(broker, t1, "from31", version="mqttv31", qos=1).returncode == 0
    assert mosquitto_pub(broker, t2, "from5", version="mqttv5", qos=1).returncode == 0
    assert s5.result() == (0, [f"{t1} from31"])
    assert s31.result() == (0, [f"{t2} from5"])


# filter -> topics published; the expected matches per filter are listed explicitly.
WILDCARD_TOPICS = [
    "sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis", "sport", "sport/",
    "/finance", "a", "a/b/c", "a//c", "$app/status", "$app", "other/x",
]
WILDCARD_CASES = {
    "sport/tennis/+": {"sport/tennis/player1"},
    "sport/#": {"sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis", "sport", "sport/"},
    "sport/+": {"sport/tennis", "sport/"},
    "+/+": {"sport/tennis", "sport/", "/finance", "other/x"},
    "/+": {"/finance"},
    "+": {"sport", "a"},
    "#": {t for t in WILDCARD_TOPICS if not t.startswith("$")},
    "+/status": set(),
    "+/+/+": {"sport/tennis/player1", "a/b/c", "a//c"},
    "a/+/c": {"a/b/c", "a//c"},
    "$app/#": {"$app/status", "$app"},
    "$app/+": {"$app/status"},
    "sport/tennis/player1": {"sport/tennis/player1"},
}


def test_wildcard_matching(broker):
    # `$done/...` is the end marker: no wildcard filter here matches it (it starts with `$`).
    sentinel = f"$done/{uid()}"
    subs = {}
    try:
        for flt in WILDCARD_CASES:
            c = raw_connect(broker)
            ack = c.subscribe([(flt, 1), (sentinel, 1)])
            assert ack.codes == [1, 1], (flt, ack)
            subs[flt] = c
        pub = raw_connect(broker)
        for t in WILDCARD_TOPICS:
            pub.publish(t, t.encode(), qos=1)
        pub.publish(sentinel, b"end", qos=1)
        pub.disconnect()
        for flt, c in subs.items():
            got = []
            for _ in range(len(WILDCARD_TOPICS) + 1):
                p = c.recv_publish(5)
                if p.topic == sentinel:
                    break
                got.append(p.topic)
            got += [p.topic for p in c.collect(0.1, PUBLISH)]
            assert sorted(got) == sorted(WILDCARD_CASES[flt]), f"filter {flt!r}: got {sorted(got)}"
    finally:
        for c in subs.values():
            c.close()


def test_unsubscribe_stops_delivery(broker):
    sub = raw_connect(broker)
    pub = raw_connect(broker)
    t = uid("unsub")
    sub.subscribe(t, 1)
    pub.publish(t, b"1", qos=1)
    assert sub.recv_publish().payload == b"1"
    ack = sub.unsubscribe([t])
    assert ack.codes == [0x00]
    pub.publish(t, b"2", qos=1)
    sub.expect_nothing(0.5)
    # v5: unsubscribing a filter that is not subscribed gives 0x11 (No subscription existed)
    assert sub.unsubscribe([t]).codes == [0x11]


@pytest.mark.mosquitto_differs("Mosquitto 2.0 closes the connection on an invalid filter instead of SUBACK 0x8F/0x80")
@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_invalid_topic_filter_gets_suback_failure(broker, version):
    c = raw_connect(broker, version=version)
    t = uid("valid")
    ack = c.subscribe([(t, 1), ("a/#/b", 1), ("a/b+", 0)])
    fail = 0x8F if version == V5 else 0x80
    assert ack.codes == [1, fail, fail]
    # the valid filter in the same SUBSCRIBE works, and the connection is still usable
    pub = raw_connect(broker)
    pub.publish(t, b"ok", qos=1)
    assert c.recv_publish().payload == b"ok"
    c.ping()


def test_invalid_topic_filter_is_rejected(broker):
    """Whatever the form (SUBACK failure or disconnect), an invalid filter never subscribes."""
    c = raw_connect(broker)
    try:
        ack = c.subscribe([("a/#/b", 1)], timeout=3)
    except ConnectionClosed:  # closed instead of SUBACK: also a rejection
        return
    assert ack.codes[0] >= 0x80, ack
