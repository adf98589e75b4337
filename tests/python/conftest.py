"""Fixtures for the black-box suite: start the broker under test on free ports.

Target (env JUNCTION_TEST_TARGET):
  junction  (default) runs $JUNCTION_BIN (default: ${CARGO_TARGET_DIR:-target}/release/junction)
  mosquitto runs a real Mosquitto 2.0, to check that the tests themselves are right.

Junction binary contract assumed here:
  * configuration by env: JUNCTION_LISTENERS__TCP__DEFAULT__BIND, JUNCTION_LISTENERS__WS__DEFAULT__BIND,
    JUNCTION_DASHBOARD__LISTENERS__HTTP__BIND (all `127.0.0.1:<port>`, port 0 = any free port),
    JUNCTION_NODE__DATA_DIR, plus the setting env vars in SETTINGS below;
  * stdout: one line `LISTENING <kind> <name> <ip:port>` per bound listener, then `READY`;
  * SIGTERM/SIGINT: graceful stop (v5 clients get DISCONNECT 0x8B), exit code 0.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

TARGET = os.environ.get("JUNCTION_TEST_TARGET", "junction").strip().lower()
IS_MOSQUITTO = TARGET == "mosquitto"
HOST = "127.0.0.1"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
REPO = Path(__file__).resolve().parents[2]

# Broker settings used by tests: name -> (Junction env var, Mosquitto config line or None).
# A test asks for them with @pytest.mark.broker_config(name=value, ...). A setting that has no
# Mosquitto equivalent skips the test when the target is Mosquitto.
SETTINGS = {
    "max_inflight": ("JUNCTION_MQTT__MAX_INFLIGHT", "max_inflight_messages {}"),
    "max_mqueue_len": ("JUNCTION_MQTT__MAX_MQUEUE_LEN", "max_queued_messages {}"),
    "max_packet_size": ("JUNCTION_MQTT__MAX_PACKET_SIZE", "max_packet_size {}"),
    "max_clientid_len": ("JUNCTION_MQTT__MAX_CLIENTID_LEN", None),
    # Mosquitto's max_keepalive (>= 10) also answers a v5 client asking 0 or more with Server Keep Alive
    "server_keepalive": ("JUNCTION_MQTT__SERVER_KEEPALIVE", "max_keepalive {}"),
    "max_keepalive": ("JUNCTION_MQTT__MAX_KEEPALIVE", "max_keepalive {}"),
    "min_keepalive": ("JUNCTION_MQTT__MIN_KEEPALIVE", None),
    "max_topic_alias": ("JUNCTION_MQTT__MAX_TOPIC_ALIAS", "max_topic_alias {}"),
    "max_connections": ("JUNCTION_LISTENERS__TCP__DEFAULT__MAX_CONNECTIONS", "max_connections {}"),
    "shared_subscription_strategy": ("JUNCTION_MQTT__SHARED_SUBSCRIPTION_STRATEGY", None),
    "sync_mode": ("JUNCTION_DURABLE_STORAGE__SYNC_MODE", None),
}


def pytest_configure(config):
    config.addinivalue_line("markers", "junction_only: needs a Junction-only feature; skipped on Mosquitto")
    config.addinivalue_line(
        "markers", "mosquitto_differs(reason): Mosquitto 2.0 genuinely differs from the spec here; skipped on it")
    config.addinivalue_line("markers", "broker_config(**settings): settings for the `broker` fixture (see SETTINGS)")
    config.addinivalue_line("markers", "broker_env(**env): raw extra env for Junction (no Mosquitto equivalent)")
    config.addinivalue_line("markers", "websockets: the test uses the WebSocket listener")


def pytest_report_header(config):
    if IS_MOSQUITTO:
        return f"broker under test: mosquitto ({shutil.which('mosquitto') or '/usr/sbin/mosquitto'})"
    return f"broker under test: junction ({junction_bin()})"


def pytest_collection_modifyitems(config, items):
    if not IS_MOSQUITTO:
        return
    for item in items:
        if item.get_closest_marker("junction_only"):
            item.add_marker(pytest.mark.skip(reason="junction_only (target is mosquitto)"))
        m = item.get_closest_marker("mosquitto_differs")
        if m:
            item.add_marker(pytest.mark.skip(reason="mosquitto differs: " + (m.args[0] if m.args else "")))
        if item.get_closest_marker("broker_env"):
            item.add_marker(pytest.mark.skip(reason="Junction env settings (target is mosquitto)"))
        m = item.get_closest_marker("broker_config")
        if m:
            missing = [k for k in m.kwargs if SETTINGS[k][1] is None]
            if missing:
                item.add_marker(pytest.mark.skip(reason=f"no Mosquitto equivalent for {missing}"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def junction_bin() -> str:
    b = os.environ.get("JUNCTION_BIN")
    if b:
        return b
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    return str(Path(target) / "release" / "junction")


def mosquitto_bin() -> str:
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class BrokerError(RuntimeError):
    pass


class Broker:
    """One broker process on 127.0.0.1. Ports are chosen on first start and kept for restarts."""

    host = HOST

    def __init__(self, workdir: Path, settings: dict | None = None, env: dict | None = None,
                 mosquitto_ws: bool = False):
        self.workdir = workdir
        self.mosquitto_ws = mosquitto_ws
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "broker.log"
        self.settings = settings or {}
        self.extra_env = {k: str(v) for k, v in (env or {}).items()}
        self.port: int | None = None
        self.ws_port: int | None = None
        self.http_port: int | None = None
        self.listeners: dict[tuple[str, str], tuple[str, int]] = {}
        self.proc: subprocess.Popen | None = None
        self.exit_codes: list[int] = []
        self._log = open(self.log_path, "ab")
        self._reader: threading.Thread | None = None

    # -- lifecycle --
    def start(self) -> "Broker":
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        if IS_MOSQUITTO:
            fresh = self.port is None
            for attempt in range(3):
                try:
                    self._start_mosquitto()
                    break
                except BrokerError:
                    # a free port picked here may be taken by someone else before Mosquitto
                    # binds it: on a first start, try again with new ports
                    if not fresh or attempt == 2 or "exited" not in str(sys.exc_info()[1]):
                        raise
                    self.port = self.ws_port = None
        else:
            self._start_junction()
        return self

    def _start_junction(self) -> None:
        binary = junction_bin()
        if not os.access(binary, os.X_OK):
            raise BrokerError(f"Junction binary not found or not executable: {binary} (set JUNCTION_BIN)")
        env = dict(os.environ)
        env.update({
            "JUNCTION_LISTENERS__TCP__DEFAULT__BIND": f"{HOST}:{self.port or 0}",
            "JUNCTION_LISTENERS__WS__DEFAULT__BIND": f"{HOST}:{self.ws_port or 0}",
            "JUNCTION_DASHBOARD__LISTENERS__HTTP__BIND": f"{HOST}:{self.http_port or 0}",
            "JUNCTION_NODE__DATA_DIR": str(self.data_dir),
        })
        env.setdefault("RUST_BACKTRACE", "1")
        for name, value in self.settings.items():
            env[SETTINGS[name][0]] = str(value)
        env.update(self.extra_env)
        self._log.write(f"--- start {binary} ---\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen([binary], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._log, cwd=self.workdir)
        ready = threading.Event()
        listeners: dict[tuple[str, str], tuple[str, int]] = {}
        proc = self.proc

        def read_stdout():
            assert proc.stdout is not None
            for raw in proc.stdout:
                self._log.write(b"[stdout] " + raw)
                self._log.flush()
                parts = raw.decode(errors="replace").split()
                if len(parts) == 4 and parts[0] == "LISTENING":
                    ip, _, port = parts[3].rpartition(":")
                    listeners[(parts[1], parts[2])] = (ip, int(port))
                elif parts == ["READY"]:
                    ready.set()

        self._reader = threading.Thread(target=read_stdout, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready.wait(0.05):
            if proc.poll() is not None:
                self._reader.join(1)
                raise BrokerError(f"junction exited with {proc.returncode} before READY\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill9()
                raise BrokerError(f"junction printed no READY within {READY_TIMEOUT}s\n{self.log_tail()}")
        self.listeners = dict(listeners)

        def port_of(kind):
            for (k, _name), (_ip, port) in sorted(self.listeners.items()):
                if k == kind:
                    return port
            return None

        self.port = port_of("tcp")
        self.ws_port = port_of("ws")
        self.http_port = port_of("http")
        if not self.port:
            raise BrokerError(f"junction printed no `LISTENING tcp ...` line\n{self.log_tail()}")

    def _start_mosquitto(self) -> None:
        if self.port is None:
            self.port = free_port()
            self.ws_port = free_port() if self.mosquitto_ws else None
        lines = [
            "# generated by tests/python/conftest.py",
            "user root",  # we run as root: keep root so the data dir stays writable
            "per_listener_settings false",
            f"listener {self.port} {HOST}",
            "allow_anonymous true",
        ]
        for name, value in self.settings.items():
            lines.append(SETTINGS[name][1].format(value))
        if self.ws_port:
            # Mosquitto's websockets listener ignores a bind address and binds all
            # interfaces, so it is only opened for tests marked `websockets`.
            lines += [f"listener {self.ws_port}", "protocol websockets"]
        lines += [
            "persistence true",
            f"persistence_location {self.data_dir}/",
            "autosave_interval 1",
            "log_dest stderr",
            "log_type all",
            "sys_interval 0",
        ]
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        self._log.write(b"--- start mosquitto ---\n")
        self._log.flush()
        offset = self.log_path.stat().st_size
        self.proc = subprocess.Popen([mosquitto_bin(), "-c", str(conf)], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log, cwd=self.workdir)
        # Readiness from the log, not a probe connection: a connection closed before CONNECT
        # upsets Mosquitto 2.0.11's max_connections count.
        deadline = time.monotonic() + 10
        while "running" not in self._log_since(offset):
            if self.proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self.proc.returncode}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill9()
                raise BrokerError(f"mosquitto not answering within 10s\n{self.log_tail()}")
            time.sleep(0.05)

    def _log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise BrokerError(f"broker did not exit within {timeout}s\n{self.log_tail()}") from None
        if self._reader is not None:
            self._reader.join(2)
        self.exit_codes.append(rc)
        return rc

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Sends SIGTERM (or `sig`) and waits for the exit; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.send_signal(sig)
        return self.wait_exit(timeout)

    def restart(self) -> "Broker":
        rc = self.stop()
        assert rc == 0, f"broker exit code {rc} on SIGTERM\n{self.log_tail()}"
        return self.start()

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
            if self._reader is not None:
                self._reader.join(2)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 60) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "--- broker log (tail) ---\n" + "\n".join(lines[-n:])

    def close(self) -> None:
        try:
            self.stop(timeout=5)
        except BrokerError:
            pass
        self.kill9()
        self._log.close()

    def __repr__(self) -> str:
        return f"<Broker {TARGET} tcp={self.port} ws={self.ws_port} http={self.http_port}>"


@pytest.fixture
def make_broker(request, tmp_path):
    """Factory: make_broker(settings={...}, env={...}, start=True) -> Broker."""
    brokers: list[Broker] = []

    ws = request.node.get_closest_marker("websockets") is not None

    def make(settings: dict | None = None, env: dict | None = None, start: bool = True) -> Broker:
        if IS_MOSQUITTO:
            if env:
                pytest.skip("Junction env settings (target is mosquitto)")
            if settings and any(SETTINGS[k][1] is None for k in settings):
                pytest.skip(f"no Mosquitto equivalent for {list(settings)}")
        b = Broker(tmp_path / f"broker{len(brokers)}", settings, env, mosquitto_ws=ws)
        brokers.append(b)
        if start:
            b.start()
        return b

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for b in brokers:
        b.close()
        if failed:
            print(f"{b!r}\n{b.log_tail()}")


@pytest.fixture
def broker(request, make_broker) -> Broker:
    m = request.node.get_closest_marker("broker_config")
    e = request.node.get_closest_marker("broker_env")
    return make_broker(settings=dict(m.kwargs) if m else None, env=dict(e.kwargs) if e else None)
