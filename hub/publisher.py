"""The ENGINE path earlier releases documented (`hub.publisher.RealtimeBackend`); the plug-in lives in
`rthub_lms`, and this name keeps existing LMS settings working."""

from rthub_lms.backend import RealtimeBackend, StreamWriter

__all__ = ["RealtimeBackend", "StreamWriter"]
