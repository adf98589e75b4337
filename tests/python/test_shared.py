"""Shared subscriptions: $share/<group>/<filter>, $queue/<filter>, redelivery to other members."""

import time
from collections import Counter

import pytest

from clients import V5, V311, raw_connect, uid
from mqttraw import PUBLISH

N = 30


def collect_group(members, n, timeout=8.0):
    """Reads PUBLISHes from all members (acking them) until n in total; returns payloads per member."""
    got = [[] for _ in members]
    deadline = time.monotonic() + timeout
    while sum(map(len, got)) < n and time.monotonic() < deadline:
        for i, m in enumerate(members):
            for p in m.collect(0.05, PUBLISH):
                m.ack(p)
                got[i].append(p.payload)
    # anything extra (duplicates) shows up here
    for i, m in enumerate(members):
        for p in m.collect(0.2, PUBLISH):
            m.ack(p)
            got[i].append(p.payload)
    return got


def check_distribution(got, n):
    total = [x for g in got for x in g]
    dupes = [k for k, v in Counter(total).items() if v > 1]
    assert not dupes, f"delivered more than once: {dupes}"
    assert sorted(total) == sorted(f"m{i}".encode() for i in range(n)), f"got {len(total)} of {n}"
    assert all(g for g in got), f"a member got nothing: {[len(g) for g in got]}"


@pytest.mark.parametrize("version", [V311, V5], ids=["v311", "v5"])
def test_share_distributes_across_members(broker, version):
    t = uid("sh")
    members = [raw_connect(broker, version=version) for _ in range(3)]
    for m in members:
        assert m.subscribe(f"$share/g1/{t}", 1).codes == [1]
    plain = raw_connect(broker)
    plain.subscribe(t, 1)  # a normal subscriber still gets every message
    pub = raw_connect(broker)
    for i in range(N):
        pub.publish(t, f"m{i}".encode(), qos=1)
    check_distribution(collect_group(members, N), N)
    assert sorted(p.payload for p in plain.recv_publishes(N)) == sorted(f"m{i}".encode() for i in range(N))


def test_share_groups_are_independent(broker):
    t = uid("shg")
    g1 = [raw_connect(broker) for _ in range(2)]
    g2 = [raw_connect(broker)]
    for m in g1:
        m.subscribe(f"$share/one/{t}", 1)
    g2[0].subscribe(f"$share/two/{t}", 1)
    pub = raw_connect(broker)
    for i in range(10):
        pub.publish(t, f"m{i}".encode(), qos=1)
    check_distribution(collect_group(g1, 10), 10)
    check_distribution(collect_group(g2, 10), 10)  # each group gets every message once


def test_share_with_wildcard_filter(broker):
    base = uid("shw")
    members = [raw_connect(broker) for _ in range(2)]
    for m in members:
        m.subscribe(f"$share/g/{base}/+/data", 1)
    pub = raw_connect(broker)
    for i in range(10):
        pub.publish(f"{base}/dev{i}/data", f"m{i}".encode(), qos=1)
    pub.publish(f"{base}/dev1/other", b"no", qos=1)
    check_distribution(collect_group(members, 10), 10)


def test_unsubscribed_member_gets_no_more(broker):
    t = uid("shu")
    a, b = raw_connect(broker), raw_connect(broker)
    a.subscribe(f"$share/g/{t}", 1)
    b.subscribe(f"$share/g/{t}", 1)
    b.unsubscribe([f"$share/g/{t}"])
    pub = raw_connect(broker)
    for i in range(6):
        pub.publish(t, f"m{i}".encode(), qos=1)
    assert [p.payload for p in a.recv_publishes(6)] == [f"m{i}".encode() for i in range(6)]
    b.expect_nothing(0.3)


@pytest.mark.junction_only  # `$queue/` is EMQX's legacy syntax (= `$share/$queue/`); Mosquitto lacks it
def test_queue_prefix_distributes(broker):
    t = uid("q")
    members = [raw_connect(broker) for _ in range(3)]
    for m in members:
        assert m.subscribe(f"$queue/{t}", 1).codes == [1]
    pub = raw_connect(broker)
    for i in range(N):
        pub.publish(t, f"m{i}".encode(), qos=1)
    check_distribution(collect_group(members, N), N)


@pytest.mark.junction_only
@pytest.mark.broker_config(shared_subscription_strategy="round_robin")
def test_round_robin_strategy_is_even(broker):
    t = uid("rr")
    members = [raw_connect(broker) for _ in range(3)]
    for m in members:
        m.subscribe(f"$share/g/{t}", 1)
    pub = raw_connect(broker)
    for i in range(N):
        pub.publish(t, f"m{i}".encode(), qos=1)
    got = collect_group(members, N)
    check_distribution(got, N)
    assert [len(g) for g in got] == [N // 3] * 3


@pytest.mark.mosquitto_differs("Mosquitto 2.0.11 drops a shared-subscription message when the member that "
                               "holds it unacknowledged goes away (spec: SHOULD resend to another member, 4.8.2)")
def test_unacked_messages_go_to_another_member_when_one_leaves(broker):
    t = uid("shr")
    # the member that will leave has no session to come back to (expiry 0)
    leaver = raw_connect(broker, props={"ReceiveMaximum": 5})
    stayer = raw_connect(broker)
    leaver.subscribe(f"$share/g/{t}", 1)
    pub = raw_connect(broker)
    # only the leaver is subscribed at first, so it gets all of them and acks none
    for i in range(5):
        pub.publish(t, f"m{i}".encode(), qos=1)
    held = leaver.recv_publishes(5, ack=False)
    assert sorted(p.payload for p in held) == [f"m{i}".encode() for i in range(5)]
    stayer.subscribe(f"$share/g/{t}", 1)
    leaver.close()  # gone without acking
    got = sorted(p.payload for p in stayer.recv_publishes(5, timeout=8))
    assert got == [f"m{i}".encode() for i in range(5)]
    stayer.expect_nothing(0.3)
