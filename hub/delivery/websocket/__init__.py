"""WebSocket delivery: `WS /v1/events` (`endpoint.py`), the frame writer of `rthub serve` (`writer.py`) and the
filter limits (`limits.py`); each subscriber's queue is the fan-out's (`hub.fanout.subscriber`)."""
