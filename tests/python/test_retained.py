"""Retained messages: set, replace, clear, retain handling, retain-as-published, expiry."""

import time

import pytest

from clients import V5, V311, raw_connect, uid
from mqttraw import PUBLISH, sub_options


def retained_for(broker, flt, version=V5, marker_count=1, wait=0.3):
    """Subscribes a new client to `flt` and returns the retained PUBLISHes it gets."""
    c = raw_connect(broker, version=version)
    try:
        c.subscribe(flt, 1)
        got = [c.recv_publish(5) for _ in range(marker_count)]
        got += [p for p in c.collect(wait, PUBLISH)]
        for p in got:
            if p.qos:
                c.ack(p)
        return got
    finally:
        c.close()


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_retained_set_replace_clear(broker, version):
    base = uid("ret")
    pub = raw_connect(broker, version=version)
    # a second retained topic under the same filter proves that retained delivery happened
    pub.publish(f"{base}/marker", b"m", qos=1, retain=True)

    pub.publish(f"{base}/t", b"first", qos=1, retain=True)
    got = retained_for(broker, f"{base}/t", version)
    assert [(p.topic, p.payload, p.retain) for p in got] == [(f"{base}/t", b"first", True)]

    pub.publish(f"{base}/t", b"second", qos=1, retain=True)
    got = retained_for(broker, f"{base}/t", version)
    assert [(p.payload, p.retain) for p in got] == [(b"second", True)]

    # empty retained payload clears it; the clearing message itself is not retained
    pub.publish(f"{base}/t", b"", qos=1, retain=True)
    got = retained_for(broker, f"{base}/#", version)
    assert [(p.topic, p.payload) for p in got] == [(f"{base}/marker", b"m")]


def test_retained_qos_is_min_of_stored_and_subscription(broker):
    base = uid("retq")
    pub = raw_connect(broker)
    pub.publish(f"{base}/q2", b"two", qos=2, retain=True)
    pub.publish(f"{base}/q0", b"zero", qos=0, retain=True)
    c = raw_connect(broker)
    c.subscribe(f"{base}/q2", 1)
    assert c.recv_publish().qos == 1
    c.subscribe(f"{base}/q0", 2)
    assert c.recv_publish().qos == 0


def test_wildcard_subscription_gets_all_retained(broker):
    base = uid("retw")
    pub = raw_connect(broker)
    topics = {f"{base}/a", f"{base}/b/c", f"{base}/d"}
    for t in topics:
        pub.publish(t, t.encode(), qos=1, retain=True)
    pub.publish(f"{uid('other')}/x", b"no", qos=1, retain=True)
    c = raw_connect(broker)
    c.subscribe(f"{base}/#", 1)
    got = c.recv_publishes(3)
    assert {p.topic for p in got} == topics
    assert all(p.retain for p in got)
    c.expect_nothing(0.3)


def test_live_message_to_existing_subscriber_has_retain_cleared(broker):
    """MQTT 3.1.1: a retained message forwarded to an existing subscription has RETAIN=0."""
    t = uid("live")
    sub = raw_connect(broker, version=V311)
    sub.subscribe(t, 1)
    pub = raw_connect(broker)
    pub.publish(t, b"live", qos=1, retain=True)
    p = sub.recv_publish()
    assert (p.payload, p.retain) == (b"live", False)
    # but it was stored
    assert [(p.payload, p.retain) for p in retained_for(broker, t)] == [(b"live", True)]


@pytest.mark.parametrize("rap", [False, True], ids=["rap0", "rap1"])
def test_retain_as_published(broker, rap):
    t = uid("rap")
    sub = raw_connect(broker)
    sub.subscribe([(t, sub_options(qos=1, rap=rap))])
    pub = raw_connect(broker)
    pub.publish(t, b"r", qos=1, retain=True)
    pub.publish(t, b"n", qos=1, retain=False)
    got = sub.recv_publishes(2)
    assert [(p.payload, p.retain) for p in got] == [(b"r", rap), (b"n", False)]


def test_retain_handling(broker):
    t = uid("rh")
    pub = raw_connect(broker)
    pub.publish(t, b"kept", qos=1, retain=True)
    c = raw_connect(broker)

    # 0: send retained messages at every subscribe, even a repeated one
    c.subscribe([(t, sub_options(qos=1, rh=0))])
    assert c.recv_publish().payload == b"kept"
    c.subscribe([(t, sub_options(qos=1, rh=0))])
    assert c.recv_publish().payload == b"kept"

    # 1: only if the subscription did not exist yet
    c.subscribe([(t, sub_options(qos=1, rh=1))])
    c.expect_nothing(0.5)
    c2 = raw_connect(broker)
    c2.subscribe([(t, sub_options(qos=1, rh=1))])
    assert c2.recv_publish().payload == b"kept"

    # 2: never
    c3 = raw_connect(broker)
    c3.subscribe([(t, sub_options(qos=1, rh=2))])
    c3.expect_nothing(0.5)
    # ... but live messages still arrive
    pub.publish(t, b"live", qos=1)
    assert c3.recv_publish().payload == b"live"


def test_retained_message_expiry(broker):
    base = uid("rexp")
    pub = raw_connect(broker)
    pub.publish(f"{base}/short", b"short", qos=1, retain=True, props={"MessageExpiryInterval": 3})
    pub.publish(f"{base}/long", b"long", qos=1, retain=True, props={"MessageExpiryInterval": 100})
    pub.publish(f"{base}/none", b"none", qos=1, retain=True)
    time.sleep(1.1)
    got = {p.topic: p for p in retained_for(broker, f"{base}/#", marker_count=3)}
    assert set(got) == {f"{base}/short", f"{base}/long", f"{base}/none"}
    # the remaining lifetime is sent, not the original interval
    assert 1 <= got[f"{base}/short"].props.get("MessageExpiryInterval") <= 2
    assert 98 <= got[f"{base}/long"].props.get("MessageExpiryInterval") <= 99
    assert "MessageExpiryInterval" not in got[f"{base}/none"].props
    time.sleep(3.1)  # 4.2 s after publishing: expired, with 1 s slack for whole-second clocks
    got = {p.topic for p in retained_for(broker, f"{base}/#", marker_count=2)}
    assert got == {f"{base}/long", f"{base}/none"}
