"""TLS (ssl) and secure WebSocket (wss) listeners, with paho and mosquitto clients.

Certificates are made per test run with the openssl CLI: a CA and a server certificate
for 127.0.0.1 / localhost signed by it. The broker gets them through env settings.
"""

import queue
import shutil
import ssl
import subprocess

import paho.mqtt.client as mqtt
import pytest

from clients import uid

pytestmark = pytest.mark.junction_only


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.fail("openssl CLI is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=junction-test-ca",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", "server.key", "-out", "server.csr", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem", cwd=d)
    return d


@pytest.fixture
def tls_broker(make_broker, pki):
    env = {}
    for kind in ("SSL", "WSS"):
        env[f"JUNCTION_LISTENERS__{kind}__DEFAULT__BIND"] = "127.0.0.1:0"
        env[f"JUNCTION_LISTENERS__{kind}__DEFAULT__SSL_OPTIONS__CERTFILE"] = str(pki / "server.pem")
        env[f"JUNCTION_LISTENERS__{kind}__DEFAULT__SSL_OPTIONS__KEYFILE"] = str(pki / "server.key")
    b = make_broker(env=env)
    ports = {k: port for (k, _name), (_ip, port) in b.listeners.items()}
    assert "ssl" in ports and "wss" in ports, f"listeners printed: {b.listeners}"
    b.ssl_port, b.wss_port = ports["ssl"], ports["wss"]
    return b


def round_trip(port, ca, transport, version):
    """Subscribe and publish to ourselves over TLS; return the payload received."""
    got = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=uid("tls"), protocol=version, transport=transport)
    if transport == "websockets":
        c.ws_set_options(path="/mqtt")
    c.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    topic = uid("tls/t")
    subscribed = queue.Queue()
    c.on_message = lambda _c, _u, m: got.put(m.payload)
    c.on_subscribe = lambda *_a: subscribed.put(True)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    try:
        c.subscribe(topic, qos=1)
        subscribed.get(timeout=5)
        c.publish(topic, b"over-tls", qos=1)
        return got.get(timeout=5)
    finally:
        c.disconnect()
        c.loop_stop()


@pytest.mark.parametrize("version", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["v311", "v5"])
def test_paho_over_tls(tls_broker, pki, version):
    assert round_trip(tls_broker.ssl_port, pki / "ca.pem", "tcp", version) == b"over-tls"


@pytest.mark.parametrize("version", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["v311", "v5"])
def test_paho_over_secure_websocket(tls_broker, pki, version):
    assert round_trip(tls_broker.wss_port, pki / "ca.pem", "websockets", version) == b"over-tls"


def test_untrusted_client_refuses_server(tls_broker, tmp_path):
    """A client that does not trust our CA must fail the handshake (the broker really speaks TLS)."""
    other = tmp_path / "other"
    other.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other",
            "-keyout", "o.key", "-out", "o.pem", cwd=other)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=uid("bad"))
    c.tls_set(ca_certs=str(other / "o.pem"), cert_reqs=ssl.CERT_REQUIRED)
    with pytest.raises(ssl.SSLError):
        c.connect("127.0.0.1", tls_broker.ssl_port, keepalive=30)


def test_mosquitto_clients_over_tls(tls_broker, pki):
    if shutil.which("mosquitto_sub") is None:
        pytest.fail("mosquitto-clients are needed (scripts/services.sh installs them)")
    topic = uid("tls/cli")
    common = ["-h", "127.0.0.1", "-p", str(tls_broker.ssl_port), "--cafile", str(pki / "ca.pem")]
    sub = subprocess.Popen(["mosquitto_sub", *common, "-t", topic, "-C", "1", "-W", "8", "-q", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # retained, so the order of subscribe and publish does not matter
        subprocess.run(["mosquitto_pub", *common, "-t", topic, "-m", "cli-tls", "-q", "1", "-r"],
                       check=True, timeout=10, capture_output=True)
        out, err = sub.communicate(timeout=10)
    finally:
        if sub.poll() is None:
            sub.kill()
    assert out.strip() == "cli-tls", err
