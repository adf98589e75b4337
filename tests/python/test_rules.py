"""Rule engine, black box: rule files in <workdir>/rules, messages from mosquitto_pub and
paho, republished messages read by real subscribers, the REST API, /metrics, hot reload,
the console action, and `junction rule test rules/`."""

import json
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from clients import (MosquittoSub, Paho, V5, V311, cli_available, http_get, metrics, mosquitto_pub,
                     paho_connect, uid)
from conftest import junction_bin

pytestmark = pytest.mark.junction_only

HOT = """
[[rules]]
id = "hot"
description = "the issue's rule"
sql = '''
SELECT payload.temp AS t, clientid FROM "sensors/+/temp" WHERE t > 30
'''
[[rules.actions]]
type = "republish"
topic = "alerts/${clientid}"
qos = 1
payload = '{"t": ${t}, "from": "${clientid}"}'
user_properties = { rule = "hot" }

[[rules.actions]]
type = "console"

[[rules.tests]]
name = "a hot reading is republished"
topic = "sensors/s1/temp"
payload = { temp = 35 }
clientid = "s1"
expect = [{ t = 35, clientid = "s1" }]
expect_actions = [
  { type = "republish", topic = "alerts/s1", payload = { t = 35, from = "s1" } },
  { type = "console" },
]

[[rules.tests]]
name = "a cold reading is not"
topic = "sensors/s1/temp"
payload = '{"temp": 20}'
expect = []
"""

CONNECTED = """
[[rules]]
id = "online"
sql = 'SELECT clientid, proto_ver, event FROM "$events/client_connected"'
[[rules.actions]]
type = "republish"
topic = "status/${clientid}"
payload = "${.}"
"""


def rules_broker(make_broker, files: dict[str, str], env: dict | None = None):
    b = make_broker(start=False, env={"JUNCTION_RULE_ENGINE__RELOAD_INTERVAL": "100ms", **(env or {})})
    d = b.workdir / "rules"
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return b.start()


def write_rule(broker, name: str, text: str) -> None:
    d = broker.workdir / "rules"
    tmp = d / f".{name}.tmp"
    tmp.write_text(text)
    tmp.rename(d / name)


def http(broker, method: str, path: str, body=None) -> tuple[int, object]:
    url = f"http://{broker.host}:{broker.http_port}{path}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_for(check, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = check()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.skipif(not cli_available(), reason="mosquitto-clients not installed")
def test_mosquitto_pub_to_rule_to_mosquitto_sub(make_broker):
    b = rules_broker(make_broker, {"hot.toml": HOT})
    sub = MosquittoSub(b, "alerts/#", count=1, qos=1, wait=10)
    r = mosquitto_pub(b, "sensors/dev7/temp", '{"temp": 20}', qos=1, extra=["-i", "dev7"])
    assert r.returncode == 0, r.stderr
    r = mosquitto_pub(b, "sensors/dev7/temp", '{"temp": 31.5}', qos=1, extra=["-i", "dev7"])
    assert r.returncode == 0, r.stderr
    rc, lines = sub.result()
    assert rc == 0
    assert lines == ['alerts/dev7 {"t": 31.5, "from": "dev7"}']
    # The console action printed the output on the broker's stdout.
    wait_for(lambda: '[rule action] hot {"t":31.5,"clientid":"dev7"}' in b.log_tail(), what="console line")


def test_paho_v5_republish_carries_user_properties_and_qos(make_broker):
    b = rules_broker(make_broker, {"hot.toml": HOT})
    with paho_connect(b, uid("sub"), version=V5) as sub, paho_connect(b, "s9", version=V311) as pub:
        sub.subscribe("alerts/#", qos=1)
        pub.publish("sensors/s9/temp", json.dumps({"temp": 45}), qos=1)
        m = sub.recv()
        assert m.topic == "alerts/s9"
        assert json.loads(m.payload) == {"t": 45, "from": "s9"}
        assert m.qos == 1
        assert ("rule", "hot") in m.properties.UserProperty


def test_client_events_are_rule_sources(make_broker):
    b = rules_broker(make_broker, {"online.toml": CONNECTED})
    with paho_connect(b, uid("watch"), version=V5) as w:
        w.subscribe("status/#", qos=0)
        cid = uid("dev")
        with paho_connect(b, cid, version=V311):
            m = w.recv()
        assert m.topic == f"status/{cid}"
        assert json.loads(m.payload) == {"clientid": cid, "proto_ver": 4, "event": "client.connected"}


def test_rest_api_lists_rules_with_metrics_and_prometheus(make_broker):
    b = rules_broker(make_broker, {"hot.toml": HOT})
    with paho_connect(b, "m1", version=V311) as pub:
        pub.publish("sensors/m1/temp", '{"temp": 40}', qos=1)
        pub.publish("sensors/m1/temp", '{"temp": 10}', qos=1)
        pub.publish("sensors/m1/temp", 'not json', qos=1)

    def metrics_of_hot():
        status, body = http(b, "GET", "/api/v5/rules/hot/metrics")
        assert status == 200, body
        return body if body["metrics"]["matched"] == 3 else None

    body = wait_for(metrics_of_hot, what="3 matched")
    m = body["metrics"]
    assert (m["passed"], m["failed"], m["failed.exception"], m["failed.no_result"]) == (1, 2, 1, 1), m
    assert body["node_metrics"][0]["metrics"] == m

    status, listing = http(b, "GET", "/api/v5/rules")
    assert status == 200
    [rule] = listing["data"]
    assert (rule["id"], rule["enable"], rule["from"], rule["actions"]) == ("hot", True, ["sensors/+/temp"],
                                                                          ["republish", "console"])
    assert http(b, "GET", "/api/v5/rules/nope")[0] == 404

    values = metrics(b)
    assert values['junction_rule_matched_total{rule_id="hot"}'] == 3
    assert values['junction_rule_passed_total{rule_id="hot"}'] == 1
    assert values["junction_rules_loaded"] == 1
    assert values["junction_rules_reload_last_error"] == 0


def test_rule_test_api_is_emqx_compatible(make_broker):
    b = rules_broker(make_broker, {})
    sql = 'SELECT payload.temp AS t, clientid FROM "sensors/+/temp" WHERE t > 30'
    ctx = {"event_type": "message_publish", "topic": "sensors/a/temp", "payload": '{"temp": 33}',
           "clientid": "c1", "qos": 1}
    assert http(b, "POST", "/api/v5/rule_test", {"sql": sql, "context": ctx}) == (200, {"t": 33, "clientid": "c1"})

    status, body = http(b, "POST", "/api/v5/rule_test", {"sql": sql, "context": {**ctx, "payload": '{"temp": 3}'}})
    assert (status, body["code"]) == (412, "NOT_MATCH")

    status, body = http(b, "POST", "/api/v5/rule_test", {"sql": "SELECT FROM", "context": ctx})
    assert (status, body["code"]) == (400, "BAD_REQUEST")
    assert body["message"].startswith("1:8:"), body

    fe = 'FOREACH payload.s AS x DO x.v AS v FROM "t/#"'
    status, body = http(b, "POST", "/api/v5/rule_test",
                        {"sql": fe, "context": {"topic": "t/1", "payload": '{"s": [{"v": 1}, {"v": 2}]}'}})
    assert (status, body) == (200, [{"v": 1}, {"v": 2}])

    ev = 'SELECT clientid, reason FROM "$events/client_disconnected"'
    status, body = http(b, "POST", "/api/v5/rule_test",
                        {"sql": ev, "context": {"event_type": "client_disconnected", "clientid": "z",
                                                "reason": "keepalive_timeout"}})
    assert (status, body) == (200, {"clientid": "z", "reason": "keepalive_timeout"})


def test_hot_reload_add_change_refuse_and_delete(make_broker):
    b = rules_broker(make_broker, {"hot.toml": HOT})
    with paho_connect(b, uid("sub"), version=V5) as sub, paho_connect(b, "h1", version=V311) as pub:
        sub.subscribe("alerts/#", qos=1)
        sub.subscribe("alerts2/#", qos=1)
        sub.subscribe("status/#", qos=1)

        # Add a file: its rule runs.
        write_rule(b, "online.toml", CONNECTED)
        wait_for(lambda: http(b, "GET", "/api/v5/rule_engine")[1]["reload"]["rules"] == 2, what="2 rules")
        with paho_connect(b, "newcomer", version=V311):
            assert sub.recv().topic == "status/newcomer"

        # A bad file is refused with file:line:col; the running rules stay.
        write_rule(b, "hot.toml", HOT.replace("WHERE t > 30", "WHERE t >> 30"))
        st = wait_for(lambda: http(b, "GET", "/api/v5/rule_engine")[1]["reload"]["last_error"], what="error")
        assert "rules/hot.toml:6:67: rules[0].sql: expected an expression, found `>`" in st, st
        assert metrics(b)["junction_rules_reload_last_error"] == 1
        pub.publish("sensors/h1/temp", '{"temp": 50}', qos=1)
        assert sub.recv().topic == "alerts/h1"

        # Fixed and changed: the new version runs.
        write_rule(b, "hot.toml", HOT.replace("alerts/${clientid}", "alerts2/${clientid}"))
        wait_for(lambda: http(b, "GET", "/api/v5/rule_engine")[1]["reload"]["last_error"] is None, what="ok")
        pub.publish("sensors/h1/temp", '{"temp": 51}', qos=1)
        assert sub.recv().topic == "alerts2/h1"

        # Deleted: gone.
        (b.workdir / "rules" / "online.toml").unlink()
        wait_for(lambda: http(b, "GET", "/api/v5/rule_engine")[1]["reload"]["rules"] == 1, what="1 rule")
        with paho_connect(b, "late", version=V311):
            sub.expect_none(0.5)


def test_bad_rules_at_startup_refuse_to_start(make_broker):
    b = make_broker(start=False)
    (b.workdir / "rules").mkdir(parents=True, exist_ok=True)
    (b.workdir / "rules" / "x.toml").write_text("[[rules]]\nid = 'x'\nsql = 'SELECT lowr(clientid) FROM \"t\"'\n")
    r = subprocess.run([junction_bin()], cwd=b.workdir, capture_output=True, text=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin", "JUNCTION_LISTENERS__TCP__DEFAULT__BIND": "127.0.0.1:0",
                            "JUNCTION_LISTENERS__WS__DEFAULT__BIND": "127.0.0.1:0",
                            "JUNCTION_DASHBOARD__LISTENERS__HTTP__BIND": "127.0.0.1:0"})
    assert r.returncode != 0
    assert "rules/x.toml:3:15: rules[0].sql: unknown function `lowr` (did you mean `lower`?)" in r.stderr, r.stderr


def test_rule_test_files_from_the_cli(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "hot.toml").write_text(HOT)
    r = subprocess.run([junction_bin(), "rule", "test", "rules/"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("ok   rules/hot.toml:") and lines[0].endswith("hot: a hot reading is republished")
    assert lines[-1] == "2 tests: 2 passed, 0 failed"

    (tmp_path / "rules" / "hot.toml").write_text(HOT.replace("expect = [{ t = 35", "expect = [{ t = 36"))
    r = subprocess.run([junction_bin(), "rule", "test", "rules/"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert "FAIL rules/hot.toml:" in r.stdout and "`t`: expected 36, got 35" in r.stdout, r.stdout

    r = subprocess.run([junction_bin(), "rule", "test", "--sql", 'SELECT payload.x AS x FROM "t/#"',
                        "--topic", "t/1", "--payload", '{"x": [1,2]}'], capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout) == (0, '{"x":[1,2]}\n')


AUTH_EVENTS = """
[[rules]]
id = "authz"
sql = '''SELECT clientid, action, topic, result FROM "$events/client/check_authz_complete" WHERE action = 'publish' '''
[[rules.actions]]
type = "republish"
topic = "audit/authz/${clientid}"

[[rules]]
id = "authn"
sql = 'SELECT clientid, reason_code, is_anonymous FROM "$events/client_check_authn_complete"'
[[rules.actions]]
type = "republish"
topic = "audit/authn/${clientid}"
"""


def test_authentication_and_authorization_events(make_broker):
    b = rules_broker(make_broker, {"auth.toml": AUTH_EVENTS})
    with paho_connect(b, uid("audit"), version=V5) as w:
        w.subscribe("audit/#", qos=0)
        with paho_connect(b, "a1", version=V311) as c:
            m = w.recv()
            assert (m.topic, json.loads(m.payload)) == (
                "audit/authn/a1", {"clientid": "a1", "reason_code": "success", "is_anonymous": True})
            c.publish("x/y", "1", qos=1)
            m = w.recv()
            assert (m.topic, json.loads(m.payload)) == (
                "audit/authz/a1", {"clientid": "a1", "action": "publish", "topic": "x/y", "result": "allow"})


PEERS = """
[[rules]]
id = "who"
sql = 'SELECT clientid, username, peerhost, peername FROM "who/#"'
[[rules.actions]]
type = "republish"
topic = "seen/${clientid}"

[[rules]]
id = "delivered"
sql = '''SELECT clientid, username, from_clientid, from_username, peerhost FROM "$events/message_delivered"
         WHERE topic = 'who/1' '''
[[rules.actions]]
type = "republish"
topic = "delivered/${clientid}"
"""


def test_message_and_delivery_events_carry_publisher_and_receiver(make_broker):
    b = rules_broker(make_broker, {"who.toml": PEERS})
    def user(client_id, version, username):
        c = Paho(b, client_id, version)
        c.c.username_pw_set(username)
        c.connect()
        return c

    with user("watcher", V5, "wu") as w:
        w.subscribe("seen/#", qos=0)
        w.subscribe("delivered/#", qos=0)
        w.subscribe("who/#", qos=0)
        with user("pubber", V311, "pu") as p:
            p.publish("who/1", "x", qos=1)
            got = {}
            for _ in range(3):
                m = w.recv()
                got[m.topic] = m.payload
        seen = json.loads(got["seen/pubber"])
        assert (seen["clientid"], seen["username"], seen["peerhost"]) == ("pubber", "pu", "127.0.0.1")
        assert seen["peername"].startswith("127.0.0.1:")
        d = json.loads(got["delivered/watcher"])
        assert d == {"clientid": "watcher", "username": "wu", "from_clientid": "pubber", "from_username": "pu",
                     "peerhost": "127.0.0.1"}
