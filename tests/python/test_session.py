"""Persistent sessions: offline queueing, redelivery with DUP, takeover, session present, expiry."""

import time

import pytest

from clients import V5, V311, paho_connect, raw_connect, uid
from mqttraw import DISCONNECT, PUBLISH, PUBREL, ConnectionClosed, encode_ack, PUBREC

# a persistent session: clean_session=0 (3.1.1) or clean_start=0 + session expiry (5)
PERSIST = {"SessionExpiryInterval": 300}


def persistent(broker, cid, version, clean=False, expect_rc=0):
    return raw_connect(broker, cid, version=version, clean=clean,
                       props=PERSIST if version == V5 else None, expect_rc=expect_rc)


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_offline_qos1_messages_are_queued(broker, version):
    cid, t = uid("sess"), uid("sq")
    c = persistent(broker, cid, version)
    assert not c.connack.session_present  # a new client id has no session yet
    c.subscribe([(t, 1), (t + "/q0", 0)])
    c.disconnect()

    pub = raw_connect(broker)
    for i in range(3):
        pub.publish(t, f"m{i}".encode(), qos=1)
    pub.publish(t + "/q0", b"qos0", qos=0)

    c = persistent(broker, cid, version)
    assert c.connack.session_present
    got = c.recv_publishes(3)
    assert [(p.topic, p.payload, p.qos) for p in got] == [(t, f"m{i}".encode(), 1) for i in range(3)]
    # QoS 0 messages to offline clients may or may not be queued; only check that nothing else came
    rest = [p for p in c.collect(0.4, PUBLISH) if p.topic != t + "/q0"]
    assert rest == []
    # the subscription survived too: live messages arrive
    pub.publish(t, b"live", qos=1)
    assert c.recv_publish().payload == b"live"


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_clean_start_discards_session(broker, version):
    cid, t = uid("clean"), uid("cs")
    c = persistent(broker, cid, version)
    c.subscribe(t, 1)
    c.disconnect()
    raw_connect(broker).publish(t, b"queued", qos=1)
    c = persistent(broker, cid, version, clean=True)
    assert not c.connack.session_present
    c.expect_nothing(0.5)
    # and the subscription is gone
    raw_connect(broker).publish(t, b"after", qos=1)
    c.expect_nothing(0.5)


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_session_present_flag(broker, version):
    cid = uid("sp")
    c = persistent(broker, cid, version)
    assert not c.connack.session_present
    c.disconnect()
    c = persistent(broker, cid, version)
    assert c.connack.session_present
    c.disconnect()


def test_v5_session_expiry_zero_ends_session_on_disconnect(broker):
    cid, t = uid("se0"), uid("se0")
    c = raw_connect(broker, cid, clean=False)  # no SessionExpiryInterval: 0
    c.subscribe(t, 1)
    c.disconnect()
    raw_connect(broker).publish(t, b"x", qos=1)
    c = raw_connect(broker, cid, clean=False)
    assert not c.connack.session_present
    c.expect_nothing(0.4)


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
@pytest.mark.parametrize("qos", [1, 2])
def test_unacked_message_redelivered_with_dup_on_resume(broker, version, qos):
    cid, t = uid("dup"), uid("dup")
    c = persistent(broker, cid, version)
    c.subscribe(t, qos)
    raw_connect(broker).publish(t, b"unacked", qos=qos)
    first = c.recv_publish(ack=False)
    assert (first.payload, first.qos, first.dup) == (b"unacked", qos, False)
    c.close()  # no PUBACK/PUBREC, no DISCONNECT

    c = persistent(broker, cid, version)
    assert c.connack.session_present
    again = c.recv_publish(ack=False)
    assert (again.topic, again.payload, again.qos, again.dup) == (t, b"unacked", qos, True)
    assert again.pid == first.pid
    c.ack(again)
    c.expect_nothing(0.4)
    c.disconnect()
    # once acknowledged it is never sent again
    c = persistent(broker, cid, version)
    c.expect_nothing(0.4)


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_qos2_pubrel_resent_on_resume(broker, version):
    cid, t = uid("rel"), uid("rel")
    c = persistent(broker, cid, version)
    c.subscribe(t, 2)
    raw_connect(broker).publish(t, b"q2", qos=2)
    p = c.recv_publish(ack=False)
    c.send(encode_ack(PUBREC, p.pid, version=version))
    rel = c.recv_until(PUBREL)
    assert rel.pid == p.pid
    c.close()  # no PUBCOMP

    c = persistent(broker, cid, version)
    assert c.connack.session_present
    rel = c.recv()
    # after PUBREC the broker resends PUBREL, never the PUBLISH
    assert (rel.type, rel.pid) == (PUBREL, p.pid), rel
    c.send(encode_ack(7, p.pid, version=version))  # PUBCOMP
    c.expect_nothing(0.4)


def test_paho_manual_ack_redelivery_with_dup(broker):
    cid, t = uid("pahodup"), uid("pahodup")
    c = paho_connect(broker, cid, version=V311, clean=False, manual_ack=True)
    c.subscribe(t, 1)
    pub = paho_connect(broker)
    pub.publish(t, b"one", 1)
    m = c.recv()
    assert (m.payload, m.dup) == (b"one", False)
    c.close()  # drop the socket without PUBACK
    c = paho_connect(broker, cid, version=V311, clean=False, manual_ack=True)
    assert c.session_present
    m = c.recv()
    assert (m.payload, m.dup) == (b"one", True)
    c.ack(m)
    c.disconnect()
    pub.close()


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_takeover_closes_first_connection(broker, version):
    cid, t = uid("take"), uid("take")
    first = persistent(broker, cid, version)
    first.subscribe(t, 1)
    second = persistent(broker, cid, version)
    assert second.connack.rc == 0
    assert second.connack.session_present  # the session is handed over
    got = first.wait_closed(5)
    assert [p for p in got if p.type != DISCONNECT] == []
    # the new connection owns the subscription
    raw_connect(broker).publish(t, b"to-second", qos=1)
    assert second.recv_publish().payload == b"to-second"
    second.ping()


@pytest.mark.mosquitto_differs("Mosquitto 2.0.11 closes the old connection without DISCONNECT 0x8E")
def test_v5_takeover_sends_disconnect_session_taken_over(broker):
    cid = uid("take5")
    first = persistent(broker, cid, V5)
    persistent(broker, cid, V5)
    got = first.wait_closed(5)
    assert [(p.type, p.rc) for p in got] == [(DISCONNECT, 0x8E)]


def test_v5_session_expiry_elapses(broker):
    cid, t = uid("sexp"), uid("sexp")
    c = raw_connect(broker, cid, clean=False, props={"SessionExpiryInterval": 1})
    c.subscribe(t, 1)
    c.disconnect()
    raw_connect(broker).publish(t, b"lost", qos=1)
    time.sleep(2.5)  # 1 s expiry + slack for whole-second timers
    c = raw_connect(broker, cid, clean=False, props={"SessionExpiryInterval": 1})
    assert not c.connack.session_present
    c.expect_nothing(0.4)


def test_v5_session_kept_within_expiry(broker):
    cid, t = uid("skeep"), uid("skeep")
    c = raw_connect(broker, cid, clean=False, props={"SessionExpiryInterval": 5})
    c.subscribe(t, 1)
    c.disconnect()
    raw_connect(broker).publish(t, b"kept", qos=1)
    time.sleep(1.0)
    c = raw_connect(broker, cid, clean=False, props={"SessionExpiryInterval": 5})
    assert c.connack.session_present
    assert c.recv_publish().payload == b"kept"


def test_v5_message_expiry_while_queued(broker):
    cid, t = uid("mexp"), uid("mexp")
    c = raw_connect(broker, cid, clean=False, props=PERSIST)
    c.subscribe(t, 1)
    c.disconnect()
    pub = raw_connect(broker)
    pub.publish(t, b"short", qos=1, props={"MessageExpiryInterval": 1})
    pub.publish(t, b"long", qos=1, props={"MessageExpiryInterval": 30})
    pub.publish(t, b"forever", qos=1)
    time.sleep(2.2)
    c = raw_connect(broker, cid, clean=False, props=PERSIST)
    got = c.recv_publishes(2)
    assert [p.payload for p in got] == [b"long", b"forever"]
    assert 26 <= got[0].props["MessageExpiryInterval"] <= 28  # 30 minus the ~2.2 s spent queued
    assert "MessageExpiryInterval" not in got[1].props
    c.expect_nothing(0.3)


def test_v311_takeover_by_v5_client(broker):
    """A session is bound to the client id, not to the protocol version."""
    cid, t = uid("mix"), uid("mix")
    c = persistent(broker, cid, V311)
    c.subscribe(t, 1)
    c.disconnect()
    raw_connect(broker).publish(t, b"q", qos=1)
    c5 = persistent(broker, cid, V5)
    assert c5.connack.session_present
    assert c5.recv_publish().payload == b"q"
