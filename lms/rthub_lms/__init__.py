"""rthub's LMS plug-in: an event-tracking backend that publishes learner events to the hub via Redis.

Configure it in the LMS as
`{"realtime": {"ENGINE": "rthub_lms.RealtimeBackend", "OPTIONS": {"redis_url": "redis://..."}}}`.
"""

from rthub_lms.backend import RealtimeBackend, StreamWriter

__all__ = ["RealtimeBackend", "StreamWriter"]
