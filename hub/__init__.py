"""rthub: the real-time event hub for Open edX (OEP-26)."""
