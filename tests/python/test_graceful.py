"""Graceful shutdown: SIGTERM/SIGINT disconnect v5 clients with 0x8B and exit 0."""

import signal

import pytest

from clients import V311, raw_connect, uid
from mqttraw import DISCONNECT


@pytest.mark.junction_only  # Mosquitto 2.0.11 closes v5 connections without DISCONNECT 0x8B
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_sends_server_shutting_down(broker, sig):
    v5 = raw_connect(broker)
    v5.subscribe(uid("g"), 1)
    v3 = raw_connect(broker, version=V311)
    broker.send_signal(sig)
    got5 = v5.wait_closed(10)
    assert [(p.type, p.rc) for p in got5] == [(DISCONNECT, 0x8B)]
    assert v3.wait_closed(10) == []  # 3.1.1 has no server DISCONNECT: just closed
    assert broker.wait_exit(10) == 0


def test_restart_after_graceful_stop(broker):
    """Also runs on Mosquitto: checks the fixture's restart() (exit 0, same ports)."""
    port = broker.port
    broker.restart()
    assert broker.port == port
    raw_connect(broker).ping()
