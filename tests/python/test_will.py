"""Will messages: abnormal close, normal DISCONNECT, DISCONNECT 0x04, will delay, keepalive timeout."""

import time

import pytest

from clients import V5, V311, raw_connect, uid
from mqttraw import PUBLISH


def observer(broker, topic):
    o = raw_connect(broker)
    o.subscribe(topic, 1)
    return o


def will(topic, payload=b"gone", qos=1, retain=False, props=None):
    return {"topic": topic, "payload": payload, "qos": qos, "retain": retain, "props": props}


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_will_on_abnormal_close(broker, version):
    t = uid("will")
    o = observer(broker, t)
    c = raw_connect(broker, version=version, will=will(t, b"died"))
    c.close()  # socket closed without DISCONNECT
    p = o.recv_publish(5)
    assert (p.topic, p.payload, p.qos) == (t, b"died", 1)


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_no_will_on_normal_disconnect(broker, version):
    t = uid("nowill")
    o = observer(broker, t)
    c = raw_connect(broker, version=version, will=will(t))
    c.disconnect()
    o.expect_nothing(1.0)


def test_v5_disconnect_with_will_message_reason_sends_will(broker):
    t = uid("will04")
    o = observer(broker, t)
    c = raw_connect(broker, will=will(t, b"on purpose"))
    c.disconnect(rc=0x04)
    assert o.recv_publish(5).payload == b"on purpose"


def test_will_properties_and_retain(broker):
    t = uid("willp")
    o = observer(broker, t)
    c = raw_connect(broker, will=will(t, b"{}", retain=True, props={
        "ContentType": "application/json", "UserProperty": [("k", "v")], "MessageExpiryInterval": 60}))
    c.close()
    p = o.recv_publish(5)
    assert p.props.get("ContentType") == "application/json"
    assert p.props.get("UserProperty") == [("k", "v")]
    assert 0 < p.props.get("MessageExpiryInterval", 0) <= 60
    # the will was retained
    late = raw_connect(broker)
    late.subscribe(t, 1)
    p = late.recv_publish(5)
    assert (p.payload, p.retain) == (b"{}", True)


def test_will_delay_interval(broker):
    t = uid("wdelay")
    o = observer(broker, t)
    c = raw_connect(broker, uid("wd"), clean=True, props={"SessionExpiryInterval": 30},
                    will=will(t, b"late", props={"WillDelayInterval": 2}))
    start = time.monotonic()
    c.close()
    o.expect_nothing(1.2)  # not before the delay
    p = o.recv_publish(4)
    elapsed = time.monotonic() - start
    assert p.payload == b"late"
    assert 1.5 <= elapsed <= 5.0, elapsed


def test_will_delay_cancelled_by_reconnect(broker):
    t, cid = uid("wcancel"), uid("wc")
    o = observer(broker, t)
    c = raw_connect(broker, cid, props={"SessionExpiryInterval": 30},
                    will=will(t, b"should not", props={"WillDelayInterval": 2}))
    c.close()
    time.sleep(0.3)
    c2 = raw_connect(broker, cid, clean=False, props={"SessionExpiryInterval": 30})
    assert c2.connack.session_present
    o.expect_nothing(3.0)
    c2.disconnect()


@pytest.mark.mosquitto_differs("Mosquitto 2.0.11 waits for the full Will Delay Interval even when the "
                               "session (expiry 0) ends at once [MQTT-3.1.3-9]")
def test_will_sent_when_session_expires_before_will_delay(broker):
    """The will goes out at the earlier of Will Delay Interval and session end."""
    t = uid("wsess")
    o = observer(broker, t)
    c = raw_connect(broker, props={"SessionExpiryInterval": 0},
                    will=will(t, b"session over", props={"WillDelayInterval": 30}))
    c.close()
    assert o.recv_publish(3).payload == b"session over"


@pytest.mark.mosquitto_differs("Mosquitto 2.0.11 checks keepalive coarsely: a 1 s keepalive times out after ~5 s, "
                               "not 1.5 s [MQTT-3.1.2-24]")
@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_will_on_keepalive_timeout(broker, version):
    t = uid("wka")
    o = observer(broker, t)
    c = raw_connect(broker, version=version, keepalive=1, will=will(t, b"silent"))
    start = time.monotonic()
    # send nothing: the broker must give up after 1.5 x keepalive
    p = o.recv_publish(4)
    elapsed = time.monotonic() - start
    assert p.payload == b"silent"
    assert 1.0 <= elapsed <= 3.5, elapsed
    # and the silent connection was closed
    c.wait_closed(2)


def test_pings_keep_connection_alive(broker):
    t = uid("wping")
    o = observer(broker, t)
    c = raw_connect(broker, keepalive=1, will=will(t, b"x"))
    for _ in range(6):  # 3 s, twice the keepalive window
        time.sleep(0.5)
        c.ping()
    o.expect_nothing(0.1)
    c.disconnect()
    o.expect_nothing(0.5)
