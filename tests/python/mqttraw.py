"""A small MQTT 3.1/3.1.1/5.0 client over a raw socket, for protocol-level tests.

It does nothing on its own: no automatic acks, no keepalive pings, no
reconnects. Tests send exactly the packets they mean and read exactly what the
broker sends back. Every read is bounded by a timeout.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

# packet types
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT, AUTH = 12, 13, 14, 15

TYPE_NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
    7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
    12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH",
}

V31, V311, V5 = 3, 4, 5

# MQTT 5 properties: id -> (name, kind)
PROPS = {
    0x01: ("PayloadFormatIndicator", "byte"),
    0x02: ("MessageExpiryInterval", "u32"),
    0x03: ("ContentType", "str"),
    0x08: ("ResponseTopic", "str"),
    0x09: ("CorrelationData", "bin"),
    0x0B: ("SubscriptionIdentifier", "varint"),
    0x11: ("SessionExpiryInterval", "u32"),
    0x12: ("AssignedClientIdentifier", "str"),
    0x13: ("ServerKeepAlive", "u16"),
    0x15: ("AuthenticationMethod", "str"),
    0x16: ("AuthenticationData", "bin"),
    0x17: ("RequestProblemInformation", "byte"),
    0x18: ("WillDelayInterval", "u32"),
    0x19: ("RequestResponseInformation", "byte"),
    0x1A: ("ResponseInformation", "str"),
    0x1C: ("ServerReference", "str"),
    0x1F: ("ReasonString", "str"),
    0x21: ("ReceiveMaximum", "u16"),
    0x22: ("TopicAliasMaximum", "u16"),
    0x23: ("TopicAlias", "u16"),
    0x24: ("MaximumQoS", "byte"),
    0x25: ("RetainAvailable", "byte"),
    0x26: ("UserProperty", "pair"),
    0x27: ("MaximumPacketSize", "u32"),
    0x28: ("WildcardSubscriptionAvailable", "byte"),
    0x29: ("SubscriptionIdentifierAvailable", "byte"),
    0x2A: ("SharedSubscriptionAvailable", "byte"),
}
PROP_IDS = {name: (pid, kind) for pid, (name, kind) in PROPS.items()}
# properties that may appear more than once: decoded as lists
MULTI = {"UserProperty", "SubscriptionIdentifier"}


class ConnectionClosed(Exception):
    """The broker closed the connection."""


# --- encoding ---------------------------------------------------------------

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def mqtt_str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def encode_props(props: dict[str, Any] | None) -> bytes:
    body = bytearray()
    for name, value in (props or {}).items():
        pid, kind = PROP_IDS[name]
        values = value if name in MULTI and isinstance(value, list) else [value]
        for v in values:
            body.append(pid)
            if kind == "byte":
                body.append(v)
            elif kind == "u16":
                body += struct.pack("!H", v)
            elif kind == "u32":
                body += struct.pack("!I", v)
            elif kind == "varint":
                body += varint(v)
            elif kind in ("str", "bin"):
                body += mqtt_str(v)
            elif kind == "pair":
                body += mqtt_str(v[0]) + mqtt_str(v[1])
    return varint(len(body)) + bytes(body)


def packet(ptype: int, flags: int, body: bytes) -> bytes:
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


def encode_connect(client_id: str, version: int = V5, clean: bool = True, keepalive: int = 60,
                   props: dict | None = None, will: dict | None = None,
                   username: str | None = None, password: bytes | None = None) -> bytes:
    """will: {"topic", "payload", "qos", "retain", "props"}"""
    name = b"MQIsdp" if version == V31 else b"MQTT"
    flags = 0
    if clean:
        flags |= 0x02
    if will:
        flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = mqtt_str(name) + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == V5:
        body += encode_props(props)
    body += mqtt_str(client_id)
    if will:
        if version == V5:
            body += encode_props(will.get("props"))
        body += mqtt_str(will["topic"]) + mqtt_str(will.get("payload", b""))
    if username is not None:
        body += mqtt_str(username)
    if password is not None:
        body += mqtt_str(password)
    return packet(CONNECT, 0, body)


def encode_publish(topic: str | bytes, payload: bytes = b"", qos: int = 0, retain: bool = False,
                   dup: bool = False, pid: int | None = None, props: dict | None = None,
                   version: int = V5) -> bytes:
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = mqtt_str(topic)
    if qos > 0:
        body += struct.pack("!H", pid if pid is not None else 1)
    if version == V5:
        body += encode_props(props)
    return packet(PUBLISH, flags, body + payload)


def encode_ack(ptype: int, pid: int, rc: int | None = None, props: dict | None = None,
               version: int = V5) -> bytes:
    body = struct.pack("!H", pid)
    if version == V5 and (rc not in (None, 0) or props):
        body += bytes([rc or 0])
        if props:
            body += encode_props(props)
    return packet(ptype, 0x02 if ptype == PUBREL else 0, body)


def sub_options(qos: int = 0, no_local: bool = False, rap: bool = False, rh: int = 0) -> int:
    return qos | (0x04 if no_local else 0) | (0x08 if rap else 0) | (rh << 4)


def encode_subscribe(pid: int, filters: list[tuple[str, int]], props: dict | None = None,
                     version: int = V5) -> bytes:
    """filters: [(filter, options byte)] (for v3 the options byte is the QoS)"""
    body = struct.pack("!H", pid)
    if version == V5:
        body += encode_props(props)
    for f, opts in filters:
        body += mqtt_str(f) + bytes([opts])
    return packet(SUBSCRIBE, 0x02, body)


def encode_unsubscribe(pid: int, filters: list[str], version: int = V5) -> bytes:
    body = struct.pack("!H", pid)
    if version == V5:
        body += encode_props(None)
    for f in filters:
        body += mqtt_str(f)
    return packet(UNSUBSCRIBE, 0x02, body)


def encode_disconnect(rc: int = 0, props: dict | None = None, version: int = V5) -> bytes:
    if version != V5 or (rc == 0 and not props):
        return packet(DISCONNECT, 0, b"")
    return packet(DISCONNECT, 0, bytes([rc]) + encode_props(props))


# --- decoding ---------------------------------------------------------------

@dataclass
class Packet:
    type: int
    flags: int
    raw: bytes
    pid: int | None = None
    rc: int | None = None           # CONNACK/PUBACK/.../DISCONNECT reason code
    codes: list[int] = field(default_factory=list)  # SUBACK/UNSUBACK
    session_present: bool = False
    topic: str | None = None
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    props: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return TYPE_NAMES.get(self.type, str(self.type))

    def __repr__(self) -> str:
        extra = []
        for k in ("pid", "rc", "topic", "qos", "retain", "dup"):
            v = getattr(self, k)
            if v not in (None, False, 0) or k == "rc" and v == 0:
                extra.append(f"{k}={v!r}")
        if self.codes:
            extra.append(f"codes={self.codes}")
        if self.type == PUBLISH:
            extra.append(f"payload={self.payload[:40]!r}")
        if self.props:
            extra.append(f"props={self.props}")
        return f"<{self.name} {' '.join(extra)}>"


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    mult, value = 1, 0
    for _ in range(4):
        b = buf[pos]
        pos += 1
        value += (b & 0x7F) * mult
        if not b & 0x80:
            return value, pos
        mult *= 128
    raise ValueError("malformed varint")


def _read_str(buf: bytes, pos: int) -> tuple[bytes, int]:
    (n,) = struct.unpack_from("!H", buf, pos)
    return buf[pos + 2:pos + 2 + n], pos + 2 + n


def decode_props(buf: bytes, pos: int) -> tuple[dict, int]:
    length, pos = _read_varint(buf, pos)
    end = pos + length
    props: dict[str, Any] = {}
    while pos < end:
        pid = buf[pos]
        pos += 1
        name, kind = PROPS[pid]
        if kind == "byte":
            v: Any = buf[pos]
            pos += 1
        elif kind == "u16":
            (v,) = struct.unpack_from("!H", buf, pos)
            pos += 2
        elif kind == "u32":
            (v,) = struct.unpack_from("!I", buf, pos)
            pos += 4
        elif kind == "varint":
            v, pos = _read_varint(buf, pos)
        elif kind == "str":
            b, pos = _read_str(buf, pos)
            v = b.decode()
        elif kind == "bin":
            v, pos = _read_str(buf, pos)
        else:  # pair
            k, pos = _read_str(buf, pos)
            val, pos = _read_str(buf, pos)
            v = (k.decode(), val.decode())
        if name in MULTI:
            props.setdefault(name, []).append(v)
        else:
            props[name] = v
    return props, end


def decode(ptype: int, flags: int, body: bytes, version: int) -> Packet:
    p = Packet(type=ptype, flags=flags, raw=body)
    v5 = version == V5
    if ptype == CONNACK:
        p.session_present = bool(body[0] & 1)
        p.rc = body[1]
        if v5 and len(body) > 2:
            p.props, _ = decode_props(body, 2)
    elif ptype == PUBLISH:
        p.qos = (flags >> 1) & 3
        p.retain = bool(flags & 1)
        p.dup = bool(flags & 8)
        t, pos = _read_str(body, 0)
        p.topic = t.decode()
        if p.qos:
            (p.pid,) = struct.unpack_from("!H", body, pos)
            pos += 2
        if v5:
            p.props, pos = decode_props(body, pos)
        p.payload = body[pos:]
    elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        (p.pid,) = struct.unpack_from("!H", body, 0)
        p.rc = body[2] if len(body) > 2 else 0
        if v5 and len(body) > 3:
            p.props, _ = decode_props(body, 3)
    elif ptype in (SUBACK, UNSUBACK):
        (p.pid,) = struct.unpack_from("!H", body, 0)
        pos = 2
        if v5:
            p.props, pos = decode_props(body, pos)
        p.codes = list(body[pos:])
    elif ptype == DISCONNECT:
        p.rc = body[0] if body else 0
        if v5 and len(body) > 1:
            p.props, _ = decode_props(body, 1)
    elif ptype == AUTH:
        p.rc = body[0] if body else 0
    return p


# --- client -----------------------------------------------------------------

class RawClient:
    def __init__(self, host: str, port: int, version: int = V5, timeout: float = 5.0):
        self.version = version
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.closed = False
        self.next_pid = 1
        self.connack: Packet | None = None

    # -- io --
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no packet from broker before timeout")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no packet from broker before timeout") from None
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.closed = True
            raise ConnectionClosed("connection closed by broker")
        self.buf += chunk

    def _try_parse(self) -> Packet | None:
        buf = self.buf
        if len(buf) < 2:
            return None
        mult, length, pos = 1, 0, 1
        while True:
            if pos >= len(buf):
                return None
            b = buf[pos]
            length += (b & 0x7F) * mult
            pos += 1
            if not b & 0x80:
                break
            mult *= 128
        if len(buf) < pos + length:
            return None
        body = buf[pos:pos + length]
        self.buf = buf[pos + length:]
        return decode(buf[0] >> 4, buf[0] & 0x0F, body, self.version)

    def recv(self, timeout: float = 5.0) -> Packet:
        """Next packet; raises TimeoutError or ConnectionClosed."""
        deadline = time.monotonic() + timeout
        while True:
            p = self._try_parse()
            if p is not None:
                return p
            if self.closed:
                raise ConnectionClosed("connection closed by broker")
            self._fill(deadline)

    def expect(self, ptype: int, timeout: float = 5.0) -> Packet:
        p = self.recv(timeout)
        assert p.type == ptype, f"expected {TYPE_NAMES[ptype]}, got {p!r}"
        return p

    def recv_until(self, ptype: int, timeout: float = 5.0, others: list | None = None) -> Packet:
        """Skips packets of other types (collected into `others`) until one of `ptype`."""
        deadline = time.monotonic() + timeout
        while True:
            p = self.recv(max(0.0, deadline - time.monotonic()))
            if p.type == ptype:
                return p
            if others is not None:
                others.append(p)

    def expect_nothing(self, timeout: float = 0.5) -> None:
        """Asserts that no packet arrives (and the connection stays open) for `timeout` s."""
        try:
            p = self.recv(timeout)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected packet: {p!r}")

    def collect(self, timeout: float, ptype: int | None = None) -> list[Packet]:
        """All packets (optionally only of one type) arriving within `timeout` seconds."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            try:
                p = self.recv(left)
            except (TimeoutError, ConnectionClosed):
                return out
            if ptype is None or p.type == ptype:
                out.append(p)

    def wait_closed(self, timeout: float = 5.0) -> list[Packet]:
        """Waits until the broker closes the connection; returns the packets read meanwhile."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                out.append(self.recv(max(0.001, deadline - time.monotonic())))
            except ConnectionClosed:
                return out
            except TimeoutError:
                raise AssertionError(f"connection still open after {timeout}s; got {out}") from None

    def close(self) -> None:
        """Closes the socket without DISCONNECT (an abnormal close)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.closed = True

    # -- protocol helpers --
    def pid(self) -> int:
        p = self.next_pid
        self.next_pid = self.next_pid % 65535 + 1
        return p

    def connect(self, client_id: str = "", clean: bool = True, keepalive: int = 60,
                props: dict | None = None, will: dict | None = None, timeout: float = 5.0,
                **kw) -> Packet:
        self.send(encode_connect(client_id, self.version, clean, keepalive, props, will, **kw))
        self.connack = self.expect(CONNACK, timeout)
        return self.connack

    def subscribe(self, filters: list[tuple[str, int]] | str, qos: int = 0,
                  props: dict | None = None, timeout: float = 5.0) -> Packet:
        if isinstance(filters, str):
            filters = [(filters, qos)]
        pid = self.pid()
        self.send(encode_subscribe(pid, filters, props, self.version))
        p = self.recv_until(SUBACK, timeout)
        assert p.pid == pid
        return p

    def unsubscribe(self, filters: list[str], timeout: float = 5.0) -> Packet:
        pid = self.pid()
        self.send(encode_unsubscribe(pid, filters, self.version))
        p = self.recv_until(UNSUBACK, timeout)
        assert p.pid == pid
        return p

    def publish(self, topic: str, payload: bytes = b"", qos: int = 0, retain: bool = False,
                props: dict | None = None, wait: bool = True, timeout: float = 5.0,
                dup: bool = False) -> Packet | None:
        """Publishes; for QoS 1/2 with wait=True, completes the flow and returns PUBACK/PUBCOMP
        (for QoS 2 the PUBREC is returned if its reason code is a failure)."""
        pid = self.pid() if qos else None
        self.send(encode_publish(topic, payload, qos, retain, dup, pid, props, self.version))
        if not qos or not wait:
            return None
        if qos == 1:
            p = self.recv_until(PUBACK, timeout)
            assert p.pid == pid
            return p
        rec = self.recv_until(PUBREC, timeout)
        assert rec.pid == pid
        if rec.rc is not None and rec.rc >= 0x80:
            return rec
        self.send(encode_ack(PUBREL, pid, version=self.version))
        comp = self.recv_until(PUBCOMP, timeout)
        assert comp.pid == pid
        return comp

    def ack(self, p: Packet) -> None:
        """Acknowledges a received QoS 1 (PUBACK) or QoS 2 (PUBREC, PUBREL/PUBCOMP) PUBLISH."""
        if p.qos == 1:
            self.send(encode_ack(PUBACK, p.pid, version=self.version))
        elif p.qos == 2:
            self.send(encode_ack(PUBREC, p.pid, version=self.version))
            rel = self.recv_until(PUBREL, 5.0)
            assert rel.pid == p.pid
            self.send(encode_ack(PUBCOMP, p.pid, version=self.version))

    def recv_publish(self, timeout: float = 5.0, ack: bool = True) -> Packet:
        p = self.recv_until(PUBLISH, timeout)
        if ack:
            self.ack(p)
        return p

    def recv_publishes(self, n: int, timeout: float = 5.0, ack: bool = True) -> list[Packet]:
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < n:
            out.append(self.recv_publish(max(0.001, deadline - time.monotonic()), ack))
        return out

    def ping(self, timeout: float = 5.0) -> None:
        self.send(packet(PINGREQ, 0, b""))
        self.recv_until(PINGRESP, timeout)

    def disconnect(self, rc: int = 0, props: dict | None = None) -> None:
        try:
            self.send(encode_disconnect(rc, props, self.version))
        except OSError:
            pass
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self.closed:
            self.close()
