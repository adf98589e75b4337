"""HTTP listener (dashboard): Prometheus /metrics and /api/v5/status."""

import time

import pytest

from clients import http_get, metric_name, parse_prometheus, raw_connect

pytestmark = pytest.mark.junction_only


def connection_gauges(broker):
    status, headers, body = http_get(broker, "/metrics")
    assert status == 200
    values, types = parse_prometheus(body.decode())
    names = {n for n, kind in types.items() if kind == "gauge" and "connection" in n}
    assert names, f"no gauge named *connection* in /metrics: {sorted(types)}"
    return {k: v for k, v in values.items() if metric_name(k) in names}


def wait_gauge(broker, expected, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        gauges = connection_gauges(broker)
        if any(v == expected for v in gauges.values()):
            return gauges
        assert time.monotonic() < deadline, f"no connection gauge reached {expected}: {gauges}"
        time.sleep(0.1)


def test_metrics_is_prometheus_text(broker):
    status, headers, body = http_get(broker, "/metrics")
    assert status == 200
    ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    assert ctype.startswith("text/plain") or "openmetrics" in ctype, ctype
    text = body.decode()
    values, types = parse_prometheus(text)
    assert values and types
    for line in text.splitlines():  # every sample belongs to a declared metric family
        if line and not line.startswith("#"):
            name = metric_name(line.split()[0])
            assert any(name == f or name.startswith(f + "_") for f in types), line


def test_connection_gauge_follows_clients(broker):
    wait_gauge(broker, 0)
    clients = [raw_connect(broker) for _ in range(3)]
    wait_gauge(broker, 3)
    clients[0].disconnect()
    clients[1].close()  # abnormal close counts too
    wait_gauge(broker, 1)
    clients[2].disconnect()
    wait_gauge(broker, 0)


def test_api_status(broker):
    status, _, body = http_get(broker, "/api/v5/status")
    assert status == 200
    assert body  # says something


def test_unknown_path_is_404(broker):
    status, _, _ = http_get(broker, "/no/such/thing")
    assert status == 404
