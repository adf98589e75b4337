"""Durability: retained messages and persistent sessions survive a graceful restart and kill -9.

With durable_storage.sync_mode = every_write, everything acknowledged before the crash must be
there after it. The graceful-restart cases also run on Mosquitto (it saves on SIGTERM), which
checks the tests; kill -9 durability is Junction-only.
"""

import pytest

from clients import V5, V311, raw_connect, uid
from conftest import IS_MOSQUITTO

MODES = [
    pytest.param("restart", id="restart"),
    pytest.param("kill9", id="kill9", marks=pytest.mark.junction_only),
]


@pytest.fixture
def durable(make_broker):
    # sync_mode has no Mosquitto equivalent: set it for Junction only
    return make_broker(settings=None if IS_MOSQUITTO else {"sync_mode": "every_write"})


def bounce(broker, mode):
    if mode == "restart":
        broker.restart()  # asserts exit code 0
    else:
        broker.kill9()
        broker.start()


@pytest.mark.parametrize("mode", MODES)
def test_retained_survives(durable, mode):
    base = uid("dret")
    pub = raw_connect(durable)
    pub.publish(f"{base}/a", b"alpha", qos=1, retain=True)
    pub.publish(f"{base}/b", b"beta", qos=1, retain=True, props={"UserProperty": [("k", "v")]})
    pub.publish(f"{base}/gone", b"x", qos=1, retain=True)
    pub.publish(f"{base}/gone", b"", qos=1, retain=True)  # cleared before the crash
    pub.close()
    bounce(durable, mode)
    c = raw_connect(durable)
    c.subscribe(f"{base}/#", 1)
    got = {p.topic: p for p in c.recv_publishes(2)}
    assert {t: p.payload for t, p in got.items()} == {f"{base}/a": b"alpha", f"{base}/b": b"beta"}
    assert got[f"{base}/b"].props.get("UserProperty") == [("k", "v")]
    assert all(p.retain for p in got.values())
    c.expect_nothing(0.3)


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
@pytest.mark.parametrize("mode", MODES)
def test_persistent_session_survives(durable, mode, version):
    cid, t = uid("dsess"), uid("dsess")
    props = {"SessionExpiryInterval": 3600} if version == V5 else None
    c = raw_connect(durable, cid, version=version, clean=False, props=props)
    c.subscribe([(t, 1), (t + "/2", 2)])
    c.disconnect()
    pub = raw_connect(durable)
    for i in range(3):
        pub.publish(t, f"q{i}".encode(), qos=1)
    pub.publish(t + "/2", b"two", qos=2)
    pub.close()

    bounce(durable, mode)

    c = raw_connect(durable, cid, version=version, clean=False, props=props)
    assert c.connack.session_present
    got = c.recv_publishes(4)
    assert [(p.topic, p.payload) for p in got] == [(t, b"q0"), (t, b"q1"), (t, b"q2"), (t + "/2", b"two")]
    c.expect_nothing(0.3)
    # the subscriptions survived as well
    pub = raw_connect(durable)
    pub.publish(t, b"after", qos=1)
    assert c.recv_publish().payload == b"after"


@pytest.mark.parametrize("mode", MODES)
def test_unacked_inflight_survives(durable, mode):
    cid, t = uid("dinf"), uid("dinf")
    props = {"SessionExpiryInterval": 3600}
    c = raw_connect(durable, cid, clean=False, props=props)
    c.subscribe(t, 1)
    raw_connect(durable).publish(t, b"in flight", qos=1)
    p = c.recv_publish(ack=False)
    assert p.payload == b"in flight"
    c.close()
    bounce(durable, mode)
    c = raw_connect(durable, cid, clean=False, props=props)
    again = c.recv_publish()
    assert (again.payload, again.dup) == (b"in flight", True)


@pytest.mark.junction_only
def test_acked_message_not_redelivered_after_crash(durable):
    cid, t = uid("dack"), uid("dack")
    props = {"SessionExpiryInterval": 3600}
    c = raw_connect(durable, cid, clean=False, props=props)
    c.subscribe(t, 1)
    raw_connect(durable).publish(t, b"done", qos=1)
    c.recv_publish(ack=True)
    c.ping()  # the PUBACK was processed before the PINGRESP
    c.close()
    durable.kill9()
    durable.start()
    c = raw_connect(durable, cid, clean=False, props=props)
    assert c.connack.session_present
    c.expect_nothing(0.5)


@pytest.mark.junction_only
def test_repeated_crashes(durable):
    base = uid("drep")
    for i in range(3):
        raw_connect(durable).publish(f"{base}/{i}", str(i).encode(), qos=1, retain=True)
        durable.kill9()
        durable.start()
    c = raw_connect(durable)
    c.subscribe(f"{base}/#", 1)
    assert sorted(p.payload for p in c.recv_publishes(3)) == [b"0", b"1", b"2"]
