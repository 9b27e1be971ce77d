"""WebSocket delivery: `WS /v1/events`, one bounded queue per subscriber."""
