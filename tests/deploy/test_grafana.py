"""The Grafana dashboard (deploy/grafana/rthub.json) asks only for metrics a real hub exports, with
the labels it exports them with, and shows what the README promises."""

from __future__ import annotations

import json
import re

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from hub.dev.simulator import SimulatedLMS
from rthub_lms import keys as rkeys
from rthub_lms.backend import RealtimeBackend
from tests import ROOT, SEND_TIMEOUT
from tests.hubproc import Hub
from tests.waiting import wait_until

DASHBOARD = ROOT / "deploy" / "grafana" / "rthub.json"
# The PromQL functions and aggregations the dashboard may use.
FUNCTIONS = {"sum", "max", "min", "avg", "rate", "increase", "histogram_quantile"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
PANELS = {
    "Ingest rate", "Filtered and dropped", "Frames delivered per channel", "Delivery latency (WebSocket)",
    "Webhook backlog", "Dead letters", "Redis reconnects", "Connections by consumer type",
}


def expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def parse(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, grouping labels) of a PromQL expression: range selectors `[...]` and label
    matchers `{...}` are dropped, `by (...)` lists are the labels, an identifier before `(` a function."""
    bare = re.sub(r"\[[^\]]*\]|\{[^}]*\}", "", expr)
    labels = {label.strip() for group in re.findall(r"\bby\s*\(([^)]*)\)", bare) for label in group.split(",")}
    bare = re.sub(r"\bby\s*\([^)]*\)", "", bare)
    functions = set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\(", bare))
    assert functions <= FUNCTIONS, f"{expr}: unexpected functions {functions - FUNCTIONS}"
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare)) - functions
    return names, labels - {""}


def test_parse_reads_names_and_labels() -> None:
    assert parse('histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="y"}[$__rate_interval])))') == (
        {"a_bucket"}, {"le"},
    )
    assert parse("sum by (channel, reason) (rate(b_total[5m])) + max(c)") == ({"b_total", "c"}, {"channel", "reason"})


def exported(hub: Hub) -> dict[str, set[str]]:
    """Every sample name /metrics can carry (a family's name with its type's suffixes: a labelled
    family with no sample yet still counts), with the label names seen on its samples."""
    text = httpx.get(f"{hub.http}/metrics", timeout=5).text
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.setdefault(family.name + suffix, set())
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def test_every_query_names_a_metric_the_hub_exports(hub: Hub) -> None:
    backend = RealtimeBackend(redis_url=hub.redis_url, redis_prefix=hub.prefix, preemptive=False, timeout=SEND_TIMEOUT)
    lms = SimulatedLMS(seed=3)
    for _ in range(5):
        backend.send(lms.next_event())
    live = rkeys.live_channel(rkeys.Prefix(hub.prefix))
    redis.Redis.from_url(hub.redis_url).publish(live, b"9999999999999-0\n{not json")  # a dead letter with its reason
    wait_until(lambda: hub.metric("rthub_events_dead_lettered_total") == 1, 10, "the bad entry was not counted")
    found = exported(hub)

    dashboard = json.loads(DASHBOARD.read_text())
    assert {panel["title"] for panel in dashboard["panels"]} >= PANELS
    for expr in expressions():
        names, labels = parse(expr)
        assert names, expr
        missing = names - set(found)
        assert not missing, f"{expr}: {sorted(missing)} not exported by the hub"
        carried = set().union(*(found[name] for name in names)) | {"le"}
        assert labels <= carried, f"{expr}: grouped by {sorted(labels - carried)}, which no sample carries"
