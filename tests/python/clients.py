"""Client helpers: a paho-mqtt 2.x wrapper with bounded, blocking calls, the raw client,
and mosquitto_pub/mosquitto_sub runners."""

from __future__ import annotations

import itertools
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

import mqttraw
from mqttraw import V5, V311, V31

PAHO_PROTOCOLS = {V31: mqtt.MQTTv31, V311: mqtt.MQTTv311, V5: mqtt.MQTTv5}
_counter = itertools.count(1)


def uid(prefix: str = "t") -> str:
    """A short unique name (client ids, topics): <= 23 chars for MQTT 3.1."""
    return f"{prefix}{next(_counter)}-{uuid.uuid4().hex[:8]}"[:23]


def props(packet_type: int, **kw) -> Properties:
    """paho Properties, e.g. props(PacketTypes.PUBLISH, MessageExpiryInterval=5)."""
    p = Properties(packet_type)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def raw(broker, version: int = V5, timeout: float = 5.0) -> mqttraw.RawClient:
    return mqttraw.RawClient(broker.host, broker.port, version, timeout)


def raw_connect(broker, client_id: str | None = None, version: int = V5, clean: bool = True,
                keepalive: int = 60, props: dict | None = None, will: dict | None = None,
                expect_rc: int | None = 0) -> mqttraw.RawClient:
    c = raw(broker, version)
    ack = c.connect(uid("raw") if client_id is None else client_id, clean, keepalive, props, will)
    if expect_rc is not None:
        assert ack.rc == expect_rc, f"CONNACK {ack!r}"
    return c


class Paho:
    """paho-mqtt client on paho's network thread (loop_start), with automatic reconnect off.

    Every call that waits for the broker is bounded by `timeout`.
    """

    def __init__(self, broker, client_id: str | None = None, version: int = V5, clean: bool = True,
                 transport: str = "tcp", manual_ack: bool = False):
        self.broker = broker
        self.version = version
        self.clean = clean
        self.transport = transport
        self.client_id = uid("paho") if client_id is None else client_id
        kw = {}
        if version != V5:
            kw["clean_session"] = clean
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=PAHO_PROTOCOLS[version], transport=transport,
                             manual_ack=manual_ack, reconnect_on_failure=False, **kw)
        if transport == "websockets":
            self.c.ws_set_options(path="/mqtt")
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack: tuple | None = None       # (reason_code, flags, properties)
        self.disconnect_info: tuple | None = None  # (reason_code, properties)
        self.subacks: dict[int, list] = {}
        self._suback_ev: dict[int, threading.Event] = {}
        self._started = False
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_subscribe = self._on_subscribe

    # -- callbacks --
    def _on_connect(self, c, u, flags, rc, properties):
        self.connack = (rc, flags, properties)
        self.connected.set()

    def _on_disconnect(self, c, u, flags, rc, properties):
        self.disconnect_info = (rc, properties)
        self.disconnected.set()

    def _on_subscribe(self, c, u, mid, rcs, properties):
        self.subacks[mid] = rcs
        self._suback_ev.setdefault(mid, threading.Event()).set()

    # -- api --
    def connect(self, keepalive: int = 60, properties: Properties | None = None,
                will: dict | None = None, timeout: float = 5.0, expect_success: bool = True):
        """will: {"topic", "payload", "qos", "retain", "properties"}. Returns the CONNACK tuple."""
        if will:
            self.c.will_set(will["topic"], will.get("payload"), will.get("qos", 0), will.get("retain", False),
                            will.get("properties"))
        port = self.broker.ws_port if self.transport == "websockets" else self.broker.port
        kw = {}
        if self.version == V5:
            kw["clean_start"] = self.clean
            kw["properties"] = properties
        self.c.connect(self.broker.host, port, keepalive, **kw)
        self.c.loop_start()
        self._started = True
        if not self.connected.wait(timeout):
            raise AssertionError(f"no CONNACK within {timeout}s")
        rc = self.connack[0]
        if expect_success:
            assert not rc.is_failure, f"CONNACK reason {rc}"
        return self.connack

    @property
    def session_present(self) -> bool:
        return bool(self.connack[1].session_present)

    def subscribe(self, topic: str, qos: int = 0, no_local: bool = False, rap: bool = False,
                  rh: int = 0, properties: Properties | None = None, timeout: float = 5.0) -> list:
        """Returns the SUBACK reason codes."""
        if self.version == V5:
            opts = SubscribeOptions(qos=qos, noLocal=no_local, retainAsPublished=rap, retainHandling=rh)
            rc, mid = self.c.subscribe(topic, options=opts, properties=properties)
        else:
            rc, mid = self.c.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe: {mqtt.error_string(rc)}"
        ev = self._suback_ev.setdefault(mid, threading.Event())
        if not ev.wait(timeout):
            raise AssertionError(f"no SUBACK within {timeout}s")
        return self.subacks[mid]

    def publish(self, topic: str, payload=b"", qos: int = 0, retain: bool = False,
                properties: Properties | None = None, timeout: float = 5.0):
        info = self.c.publish(topic, payload, qos, retain, properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish: {mqtt.error_string(info.rc)}"
        info.wait_for_publish(timeout)
        assert info.is_published(), f"publish to {topic} not completed within {timeout}s"
        return info

    def recv(self, timeout: float = 5.0) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: no message within {timeout}s") from None

    def recv_n(self, n: int, timeout: float = 5.0) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < n:
            left = deadline - time.monotonic()
            try:
                out.append(self.messages.get(timeout=max(0.001, left)))
            except queue.Empty:
                raise AssertionError(f"{self.client_id}: got {len(out)} of {n} messages within {timeout}s: "
                                     f"{[(m.topic, m.payload) for m in out]}") from None
        return out

    def drain(self, timeout: float = 0.5) -> list[mqtt.MQTTMessage]:
        """All messages arriving within `timeout` seconds."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                return out

    def expect_none(self, timeout: float = 0.5) -> None:
        got = self.drain(timeout)
        assert not got, f"unexpected messages: {[(m.topic, m.payload) for m in got]}"

    def ack(self, msg: mqtt.MQTTMessage) -> None:
        self.c.ack(msg.mid, msg.qos)

    def disconnect(self, reasoncode=None, properties=None, timeout: float = 5.0) -> None:
        """A normal DISCONNECT (reasoncode: paho ReasonCode for v5)."""
        if not self._started:
            return
        if not self.disconnected.is_set():
            self.c.disconnect(reasoncode, properties)
            self.disconnected.wait(timeout)
        self.c.loop_stop()
        self._started = False

    def close(self) -> None:
        """Drops the connection without DISCONNECT (an abnormal close) and stops the thread."""
        if not self._started:
            return
        sock = self.c.socket()  # a socket, or paho's WebSocket wrapper
        if sock is not None:
            try:  # shut down a duplicate of the fd: the network thread sees EOF and stops
                dup = socket.socket(fileno=os.dup(sock.fileno()))
                dup.shutdown(socket.SHUT_RDWR)
                dup.close()
            except OSError:
                pass
        self.disconnected.wait(5)
        self.c.loop_stop()
        self._started = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.disconnect(timeout=1)
        finally:
            self.close()


def paho_connect(broker, client_id: str | None = None, version: int = V5, clean: bool = True,
                 **kw) -> Paho:
    transport = kw.pop("transport", "tcp")
    manual_ack = kw.pop("manual_ack", False)
    p = Paho(broker, client_id, version, clean, transport, manual_ack)
    p.connect(**kw)
    return p


# --- HTTP -------------------------------------------------------------------

def http_get(broker, path: str, timeout: float = 5.0) -> tuple[int, dict, bytes]:
    """(status, headers, body) of GET http://127.0.0.1:<http_port><path>; HTTP errors are returned."""
    assert broker.http_port, "broker has no HTTP listener"
    url = f"http://{broker.host}:{broker.http_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def parse_prometheus(text: str) -> tuple[dict[str, float], dict[str, str]]:
    """Prometheus text format -> ({'name{labels}': value}, {name: type})."""
    values: dict[str, float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            if "}" in line:
                key, rest = line[:line.rindex("}") + 1], line[line.rindex("}") + 1:]
            else:
                key, _, rest = line.partition(" ")
            values[key] = float(rest.split()[0])  # a timestamp may follow the value
    return values, types


def metrics(broker) -> dict[str, float]:
    """/metrics as {'name{labels}': value}."""
    status, _, body = http_get(broker, "/metrics")
    assert status == 200, status
    return parse_prometheus(body.decode())[0]


def metric_name(key: str) -> str:
    return key.split("{", 1)[0]


# --- mosquitto_pub / mosquitto_sub -------------------------------------------

def cli_available() -> bool:
    return bool(shutil.which("mosquitto_pub") and shutil.which("mosquitto_sub"))


class MosquittoSub:
    """mosquitto_sub in the background; waits for its SUBACK before returning."""

    def __init__(self, broker, topic: str, count: int, version: str = "mqttv311", qos: int = 0,
                 wait: int = 5, extra: list[str] | None = None):
        args = ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-V", version, "-t", topic,
                "-q", str(qos), "-C", str(count), "-W", str(wait), "-v", "-d", "-i", uid("msub")]
        if shutil.which("stdbuf"):  # mosquitto_sub block-buffers stdout into a pipe
            args = ["stdbuf", "-oL"] + args
        self.proc = subprocess.Popen(args + (extra or []), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        self.subscribed = threading.Event()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        if not self.subscribed.wait(5):
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"mosquitto_sub got no SUBACK within 5s: {self.lines}")

    def _read(self):
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if "received SUBACK" in line:
                self.subscribed.set()

    def result(self, timeout: float = 10.0) -> tuple[int, list[str]]:
        """(exit code, message lines `topic payload`) once mosquitto_sub exits (debug lines dropped)."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"mosquitto_sub did not exit within {timeout}s: {self.lines}") from None
        self._t.join(2)
        msgs = [l for l in self.lines if not l.startswith(("Client ", "Subscribed (", "Timed out"))]
        return rc, msgs


def mosquitto_pub(broker, topic: str, message: str, version: str = "mqttv311", qos: int = 0,
                  extra: list[str] | None = None) -> subprocess.CompletedProcess:
    args = ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", version, "-t", topic,
            "-m", message, "-q", str(qos), "-i", uid("mpub")]
    return subprocess.run(args + (extra or []), capture_output=True, text=True, timeout=10)


__all__ = ["Paho", "paho_connect", "raw", "raw_connect", "uid", "props", "PacketTypes", "Properties",
           "MosquittoSub", "mosquitto_pub", "cli_available", "http_get", "metrics", "metric_name",
           "parse_prometheus", "V5", "V311", "V31", "mqtt", "mqttraw"]
