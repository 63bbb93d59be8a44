"""The fan-out between receivers and consumers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from xds_server.telemetry._limits import STATS
from xds_server.telemetry._model import RequestRecord, StatRecord, TelemetryConsumer

__all__ = ["TelemetryHub"]

log = structlog.get_logger("xds_server.telemetry")


class TelemetryHub:
    """Receivers hand attributed batches here; every subscribed consumer gets each one.

    Itself a `TelemetryConsumer`. Runs on the event loop: consumers are called in the
    order they subscribed, synchronously. A consumer that raises is logged and counted
    (`consumer_error`) and the other consumers still get the batch; the receiver never
    sees the error. Subscribing while a batch is delivered takes effect for the next.
    """

    def __init__(self) -> None:
        self._consumers: tuple[TelemetryConsumer, ...] = ()

    def subscribe(self, consumer: TelemetryConsumer) -> Callable[[], None]:
        """Deliver every later batch to `consumer`; returns a function that unsubscribes."""
        self._consumers = (*self._consumers, consumer)

        def unsubscribe() -> None:
            self._consumers = tuple(c for c in self._consumers if c is not consumer)

        return unsubscribe

    @property
    def consumers(self) -> tuple[TelemetryConsumer, ...]:
        """The consumers subscribed now."""
        return self._consumers

    def on_requests(self, records: Sequence[RequestRecord]) -> None:
        """Hand a batch of access-log entries to every consumer."""
        if not records:
            return
        for consumer in self._consumers:
            try:
                consumer.on_requests(records)
            except Exception as exc:  # a consumer bug must not end an Envoy's stream
                STATS.dropped["consumer_error"] += len(records)
                log.error("telemetry_consumer_failed", consumer=type(consumer).__name__,
                          kind="request", error=repr(exc))

    def on_stats(self, records: Sequence[StatRecord]) -> None:
        """Hand a batch of stat samples to every consumer."""
        if not records:
            return
        for consumer in self._consumers:
            try:
                consumer.on_stats(records)
            except Exception as exc:
                STATS.dropped["consumer_error"] += len(records)
                log.error("telemetry_consumer_failed", consumer=type(consumer).__name__,
                          kind="stat", error=repr(exc))
