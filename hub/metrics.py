"""Prometheus metrics for `GET /metrics`, read at scrape time from the counters the hub already keeps.

It belongs to the app layer: it reads the fan-out, the broker and (through callables) webhook delivery,
and the WebSocket endpoint is only handed `Metrics.frames_sent` as a callable, so no layer below imports it.

The hot path only bumps plain integers (`Fanout.counts`, the webhook workers' counts); this collector
turns them into metric families when Prometheus asks, so metrics cost nothing per event. The one
exception is the delivery latency histogram: one bucket counter bumped per frame sent (`Metrics`),
with no lock, since the event loop is the only writer.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from hub.fanout.dispatch import Fanout
from hub.fanout.render import Frame
from hub.ingest import Broker
from hub.redis import UNREACHABLE

# Publish (stream id time) to hand-over to the socket, in seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)

# Fan-out count keys that are per translator: "<outcome>:<translator>".
_PER_TRANSLATOR = {
    "translated": ("rthub_events_translated", "Events translated, once per (event, translator, consumer type)"),
    "untranslatable": ("rthub_events_untranslatable", "Events with no mapping in the consumer's translator"),
    "malformed": ("rthub_events_rejected_by_translator", "Events a translator rejected as malformed"),
    "no_external_id": (
        "rthub_events_without_external_id",
        "Renders for lms-external-id clients refused: the LMS mirrored no external id for the learner",
    ),
}
_PLAIN = {
    "ingested": ("rthub_events_ingested", "Events read from the live feed"),
    "unwanted": ("rthub_events_filtered_out", "Events no connected socket was entitled to"),
    "no_user": ("rthub_events_without_learner", "Events dropped because they name no learner"),
    "dispatch_errors": ("rthub_dispatch_errors", "Events whose fan-out failed unexpectedly"),
    "dispatch_retries": ("rthub_dispatch_retries", "Fan-out attempts retried while Redis was away"),
    "bundled": ("rthub_events_from_render_stage", "Events received rendered from the shared render stage"),
    "render_cache_hits": ("rthub_render_cache_hits", "Frames served from the render cache instead of translated"),
    "render_joined": ("rthub_render_joined", "Renders that waited for the same render already under way"),
}
_WEBHOOK = {
    "delivered": ("rthub_webhook_events_delivered", "Events delivered by webhook (2xx)"),
    "requests": ("rthub_webhook_requests_succeeded", "Webhook requests answered with 2xx"),
    "ack_retries": ("rthub_webhook_ack_retries", "Acknowledgements of a 2xx retried because Redis refused them"),
    "failed_attempts": ("rthub_webhook_failed_attempts", "Webhook attempts that failed and will be retried"),
    "dead_lettered": ("rthub_webhook_dead_lettered", "Webhook events moved to the dead-letter store"),
    "already_stored": ("rthub_webhook_already_stored", "Events an LRS said it already held (409), acknowledged"),
    "covered_by_socket": ("rthub_webhook_covered_by_socket", "Queued events skipped because a socket had them"),
    "routed": ("rthub_webhook_routed", "Stream entries read by webhook routing"),
    "routing_taken": ("rthub_webhook_routing_taken", "Times this instance took the webhook routing lease"),
    "route_retries": ("rthub_webhook_route_retries", "Routing pages retried while Redis refused or was away"),
    "gaps": ("rthub_webhook_gaps", "Gap dead letters: events left the stream before they were routed"),
    "no_external_id": (
        "rthub_webhook_no_external_id", "Events dead-lettered for lms-external-id clients: no external id mirrored"
    ),
    "caught_up": ("rthub_webhook_caught_up", "Events queued for a client caught up from its creation or change"),
    "endpoints_disabled": ("rthub_webhook_endpoints_disabled", "Endpoints disabled (410 or the breaker)"),
}

PAUSE_REASONS = ("endpoint", "credential", "secret", "grant")

_RESUME = {
    "history_read": ("rthub_resume_history_reads", "Catch-up pages read from Redis"),
    "history_cached": ("rthub_resume_history_cached", "Catch-up pages served from the shared history"),
    "history_joined": ("rthub_resume_history_joined", "Catch-up pages that waited for another socket's read"),
}


class HubCollector(Collector):
    def __init__(
        self,
        fanout: Fanout,
        broker: Broker,
        webhook_counts: Callable[[], Counter[str]],
        sent_frames: Callable[[], int],
        history_counts: Counter[str] | None = None,
        change_failures: Callable[[], int] = lambda: 0,
        signing_key_missing: Callable[[], bool] = lambda: False,
        webhook_paused: Callable[[], Counter[str]] = Counter,
    ) -> None:
        self._fanout = fanout
        self._broker = broker
        self._webhook_counts = webhook_counts
        self._sent_frames = sent_frames
        self._history_counts = history_counts if history_counts is not None else Counter()
        self._change_failures = change_failures
        self._signing_key_missing = signing_key_missing
        self._webhook_paused = webhook_paused

    def collect(self) -> Iterator[Metric]:
        counts = self._fanout.counts
        for key, (name, help_text) in _PLAIN.items():
            yield CounterMetricFamily(name, help_text, value=counts.get(key, 0))
        dead = CounterMetricFamily(
            "rthub_events_dead_lettered", "Bad stream entries moved to the ingest dead-letter stream", labels=["reason"]
        )
        for reason, count in sorted(self._fanout.dead_letters.counts.items()):
            dead.add_metric([reason], count)
        yield dead
        for prefix, (name, help_text) in _PER_TRANSLATOR.items():
            family = CounterMetricFamily(name, help_text, labels=["translator"])
            for translator in ("xapi", "caliper"):
                family.add_metric([translator], counts.get(f"{prefix}:{translator}", 0))
            yield family
        delivered = CounterMetricFamily("rthub_frames_delivered", "Frames handed to consumers", labels=["channel"])
        delivered.add_metric(["websocket"], self._sent_frames())
        webhook = self._webhook_counts()
        delivered.add_metric(["webhook"], webhook.get("delivered", 0))
        yield delivered
        for key, (name, help_text) in _WEBHOOK.items():
            yield CounterMetricFamily(name, help_text, value=webhook.get(key, 0))
        paused = GaugeMetricFamily(
            "rthub_webhook_clients_paused",
            "Webhook clients whose delivery is paused, their events kept: the endpoint refused the credentials "
            "(endpoint), or the configuration is unusable here (credential, secret, grant)",
            labels=["reason"],
        )
        now_paused = self._webhook_paused()
        for reason in PAUSE_REASONS:
            paused.add_metric([reason], now_paused.get(reason, 0))
        yield paused
        sockets = GaugeMetricFamily("rthub_connections", "Live WebSocket connections", labels=["consumer_type"])
        per_type = Counter(conn.identity.consumer_type for conn in self._fanout.connections.values())
        for consumer_type in ("adaptive", "enterprise", "university", "other"):
            sockets.add_metric([consumer_type], per_type.get(consumer_type, 0))
        yield sockets
        for key, (name, help_text) in _RESUME.items():
            yield CounterMetricFamily(name, help_text, value=self._history_counts.get(key, 0))
        reconnects = getattr(self._broker, "reconnects", 0)
        yield CounterMetricFamily("rthub_redis_reconnects", "Times the live feed had to resubscribe", value=reconnects)
        yield CounterMetricFamily(
            "rthub_registry_change_failures",
            "Registry change notices or reloads that failed to apply (each is retried by a full reload)",
            value=self._change_failures(),
        )
        yield GaugeMetricFamily(
            "rthub_signing_key_missing",
            "1 while this hub lacks the private key the registry names current (it signs with its own; see the log)",
            value=int(self._signing_key_missing()),
        )


class RedisSafetyCollector(Collector):
    """`rthub_redis_unsafe{setting}`: how many Redis servers have a setting that can lose rthub's data
    (or would not say), as `hub.redis_safety` last found; 0 for every setting when all is safe."""

    def __init__(self, counts: Callable[[], dict[str, int]], losses: Callable[[], int]) -> None:
        self._counts = counts
        self._losses = losses

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "rthub_redis_unsafe",
            "Redis servers whose setting can lose rthub's data, or could not be read (see /readyz)",
            labels=["setting"],
        )
        for setting, count in self._counts().items():
            family.add_metric([setting], count)
        yield family
        yield CounterMetricFamily(
            "rthub_redis_data_lost", "Times this hub found Redis had lost rthub's data (its marker gone)",
            value=self._losses(),
        )


class WebhookBacklog(Collector):
    """`rthub_webhook_backlog`: webhook events queued and not yet delivered, over every webhook client.

    Read from Redis before each scrape (`refresh`), so it is the same on every hub instance: aggregate it
    with `max`, not `sum`. Left out of the scrape while Redis does not answer, rather than shown stale.
    """

    def __init__(self, read: Callable[[], Awaitable[int]]) -> None:
        self._read = read
        self.value: int | None = None

    async def refresh(self, timeout: float) -> None:
        try:
            self.value = await asyncio.wait_for(self._read(), timeout)
        except (TimeoutError, RedisError, *UNREACHABLE):
            self.value = None

    def collect(self) -> Iterator[Metric]:
        if self.value is not None:
            yield GaugeMetricFamily(
                "rthub_webhook_backlog", "Webhook events queued and not yet delivered, all clients", value=self.value
            )


class Metrics:
    """One registry per app, so several hubs in one process (tests, the demo) never share series."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.sent_frames = 0
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self._latency_sum = 0.0
        self.registry.register(_LatencyCollector(self))

    def frames_sent(self, frames: Sequence[Frame]) -> None:
        """Count frames handed to a socket now, by the stream time of their events (a connection's
        `on_sent`: it runs once per write, for every frame, so it does the least it can)."""
        now = time.time()
        buckets = self._buckets
        for frame in frames:
            if frame.order is None:  # a control frame
                continue
            latency = now - frame.order[0] / 1000
            if latency < 0.0:  # the stream's clock ahead of ours
                latency = 0.0
            buckets[bisect_left(LATENCY_BUCKETS, latency)] += 1
            self._latency_sum += latency
            self.sent_frames += 1

    def latency_family(self) -> HistogramMetricFamily:
        cumulative, total = [], 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self._buckets, strict=True):
            total += count
            cumulative.append((str(bound) if bound != float("inf") else "+Inf", total))
        return HistogramMetricFamily(
            "rthub_delivery_latency_seconds",
            "From the event's arrival in Redis to its hand-over to a WebSocket",
            buckets=cumulative,
            sum_value=self._latency_sum,
        )

    def watch(self, collector: Collector) -> None:
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LatencyCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield self._metrics.latency_family()
