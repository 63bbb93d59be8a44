"""The proxy index stays equal to a recount from the records, whatever the order of
stream callbacks (connects, responses, ACKs, NACKs, disconnects, another replica's
proxies), and its queries page stably while proxies come and go."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from xds_server.admin._fleet import fleet_summary
from xds_server.nodes import NodeInfo
from xds_server.proxy_index import ProxyQuery, QueryError, natural_key, slots_of
from xds_server.status import StatusTracker
from xds_server.xds import StreamInfo

TYPE = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"


def _recount(tracker: StatusTracker) -> Counter[object]:
    counts: Counter[object] = Counter()
    for proxy in tracker.proxies.values():
        slots = slots_of(proxy)
        assert [s.state for s in slots] == [r.state for r in proxy.resources.values()]
        counts.update(slots)
    return counts


def test_index_equals_a_recount_after_random_callbacks() -> None:
    rng = random.Random(18)
    tracker = StatusTracker(registry=None, replica_id="r1")
    streams: dict[int, StreamInfo] = {}
    next_id = 0
    for step in range(3000):
        op = rng.random()
        if op < 0.2 or not streams:
            next_id += 1
            node = NodeInfo(id=f"n-{rng.randrange(60)}", cluster=f"c{rng.randrange(3)}")
            s = StreamInfo(stream_id=next_id, service="ecds", delta=False, peer="p", node=node)
            tracker.on_stream_open(s)
            tracker.on_stream_node(s)
            streams[next_id] = s
            continue
        s = streams[rng.choice(list(streams))]
        names = {n: f"v{rng.randrange(3)}" for n in rng.sample(["a", "b"], rng.randint(1, 2))}
        if op < 0.45:
            tracker.on_response(s, TYPE, "x", names, ["b"] if rng.random() < 0.05 else [])
        elif op < 0.75:
            tracker.on_ack(s, TYPE, "x", names)
        elif op < 0.9:
            tracker.on_nack(s, TYPE, "x", names, 13, rng.choice(["bad module", "no memory"]))
        else:
            tracker.on_stream_closed(streams.pop(s.stream_id))
        if step % 500 == 250:  # another replica reports its proxies (some the same nodes)
            tracker.set_remote({f"n-{i}": {"node_id": f"n-{i}", "replica": "r2", "connected": i % 2 == 0,
                                           "resources": {"a": {"version_sent": "v1", "version_acked": "v1"}}}
                                for i in range(50, 70)})
        if step % 100 == 0:
            assert tracker.index.slots == _recount(tracker), step
    assert tracker.index.slots == _recount(tracker)
    assert len(tracker.index) == len(tracker.proxies)
    for name in ("a", "b"):
        live = [p.resources[name] for p in tracker.proxies.values() if p.connected and name in p.resources]
        assert tracker.counts(name) == {"total": sum(1 for r in live if r.sent),
                                        "acked": sum(1 for r in live if r.sent and r.state == "ACKED"),
                                        "nacked": sum(1 for r in live if r.sent and r.state == "NACKED")}
        assert tracker.rollout(name) == dict(Counter(r.acked for r in live if r.acked))
        groups = {(g["message"], g["count"]) for f in fleet_summary({}, tracker)["filters"]
                  if f["name"] == name for g in f["nacks"]}
        assert groups == set(Counter(r.last_nack.message for r in live
                                     if r.state == "NACKED" and r.last_nack is not None).items())


def test_pages_are_stable_while_proxies_come_and_go() -> None:
    tracker = StatusTracker(registry=None)

    def connect(i: int) -> StreamInfo:
        s = StreamInfo(stream_id=i, service="ecds", delta=False, peer="p", node=NodeInfo(id=f"edge-{i}"))
        tracker.on_stream_node(s)
        return s

    streams = {i: connect(i) for i in range(0, 40, 2)}  # edge-0, edge-2, ... edge-38
    first, total, cursor = tracker.query(ProxyQuery(limit=5))
    assert [p.node.id for p in first] == ["edge-0", "edge-2", "edge-4", "edge-6", "edge-8"]
    assert (total, cursor) == (20, "edge-8")
    connect(1)  # before the cursor: the next page does not repeat anyone
    connect(9)  # after it: the next page picks it up
    tracker.on_stream_closed(streams[10])  # disconnected proxies stay listed (retention)
    second, total, cursor = tracker.query(ProxyQuery(limit=5, cursor=cursor))
    assert [p.node.id for p in second] == ["edge-9", "edge-10", "edge-12", "edge-14", "edge-16"]
    assert (total, cursor) == (22, "edge-16")
    rest, _, cursor = tracker.query(ProxyQuery(cursor=cursor))
    assert [p.node.id for p in rest][-1] == "edge-38" and cursor == ""


def test_natural_order_and_limits_take_any_unicode_digit_like_text() -> None:
    """`'²'.isdigit()` is true but `int('²')` fails: node ids and `limit` must not crash."""
    assert natural_key("fleet-2") < natural_key("fleet-10") < natural_key("fleet-10a")
    assert natural_key("a²b10") == ((0, "a²b"), (1, 10))
    with pytest.raises(QueryError, match="whole number"):
        ProxyQuery.from_params({"limit": "²"})
    with pytest.raises(QueryError, match="whole number"):
        ProxyQuery.from_params({"limit": "٣"})
