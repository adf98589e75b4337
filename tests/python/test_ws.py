"""MQTT over WebSocket (path /mqtt) interoperating with TCP clients."""

import pytest

from clients import V5, V311, paho_connect, raw_connect, uid

pytestmark = pytest.mark.websockets


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_websocket_and_tcp_clients_exchange_messages(broker, version, qos):
    assert broker.ws_port, "no WebSocket listener"
    ws = paho_connect(broker, version=version, transport="websockets")
    tcp = raw_connect(broker)
    t = uid("ws")
    try:
        ws.subscribe(f"{t}/to-ws", qos)
        tcp.subscribe(f"{t}/to-tcp", qos)
        tcp.publish(f"{t}/to-ws", b"over tcp", qos=qos)
        ws.publish(f"{t}/to-tcp", b"over ws", qos)
        m = ws.recv()
        assert (m.topic, m.payload, m.qos) == (f"{t}/to-ws", b"over tcp", qos)
        p = tcp.recv_publish()
        assert (p.topic, p.payload, p.qos) == (f"{t}/to-tcp", b"over ws", qos)
    finally:
        ws.close()


def test_websocket_large_message_and_retained(broker):
    t = uid("wsbig")
    payload = bytes(range(256)) * 400  # spans many WebSocket frames
    pub = paho_connect(broker, transport="websockets")
    pub.publish(t, payload, 1, retain=True)
    sub = paho_connect(broker, transport="websockets")
    try:
        sub.subscribe(t, 1)
        m = sub.recv()
        assert (m.payload, m.retain) == (payload, True)
    finally:
        pub.close()
        sub.close()


def test_websocket_will_on_abnormal_close(broker):
    t = uid("wswill")
    obs = raw_connect(broker)
    obs.subscribe(t, 1)
    c = paho_connect(broker, transport="websockets", will={"topic": t, "payload": b"ws gone", "qos": 1})
    c.close()  # drops the socket, no DISCONNECT
    assert obs.recv_publish(5).payload == b"ws gone"
