"""Delivery: the last stage of the pipeline, one package per channel (WebSocket, webhook)."""
