"""mqtt.auto_subscribe: topics (with ${clientid}, ${username}) subscribed for every client
right after CONNACK, as EMQX's auto_subscribe."""

import pytest

from clients import V5, V311, Paho, metrics, paho_connect, uid

pytestmark = pytest.mark.junction_only

TOPICS = '[{ topic = "c/${clientid}/#", qos = 1 }, { topic = "u/${username}", qos = 0 }, { topic = "bad/#/x" }]'


def test_clients_are_subscribed_on_connect(make_broker):
    b = make_broker(env={"JUNCTION_MQTT__AUTO_SUBSCRIBE": TOPICS})
    with paho_connect(b, uid("pub"), version=V5) as pub:
        pub.publish("c/early/cfg", "retained-config", qos=1, retain=True)
        dev = Paho(b, "early", V311)
        dev.c.username_pw_set("bob")
        dev.connect()
        with dev:
            # The retained message of the auto-subscribed filter arrives with no SUBSCRIBE.
            m = dev.recv()
            assert (m.topic, m.payload, m.retain) == ("c/early/cfg", b"retained-config", True)
            pub.publish("c/early/cmd", "on", qos=1)
            m = dev.recv()
            assert (m.topic, m.payload, m.qos) == ("c/early/cmd", b"on", 1)
            pub.publish("u/bob", "hi", qos=0)
            assert dev.recv().payload == b"hi"
            pub.publish("c/other/cmd", "not for me", qos=1)
            dev.expect_none(0.3)
    # The invalid filter was refused and counted; the client connected anyway.
    assert metrics(b)["junction_auto_subscribe_failed_total"] >= 1
