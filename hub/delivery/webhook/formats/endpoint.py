"""An LRS or Caliper-endpoint client's format: where to POST and with which sender."""

from __future__ import annotations

import base64

from auth.clients import Client
from auth.endpoint_credentials import cipher
from hub.config import Settings
from hub.delivery.webhook.formats.batch import BatchSender
from hub.delivery.webhook.formats.caliper import CaliperSender
from hub.delivery.webhook.formats.lrs import LrsSender, statements_url


def sensor_id(settings: Settings) -> str:
    """The Caliper `sensor` IRI: this hub."""
    return settings.issuer.rstrip("/") + "/caliper/sensor"


def endpoint_sender(client: Client, settings: Settings) -> tuple[str, BatchSender]:
    """(URL to POST to, sender); raises `CredentialError` when the stored credential or headers do not
    decrypt. The client's extra endpoint headers ride on every request the sender makes."""
    keys = cipher(settings.endpoint_key_path)
    credential = keys.decrypt(client.endpoint_credential)
    extra = keys.open_headers(client.endpoint_headers)
    if client.endpoint_auth == "basic":
        pair = f"{client.endpoint_username}:{credential}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode()
    else:
        authorization = f"Bearer {credential}"
    sender: BatchSender
    if client.delivery == "lrs":
        url, sender = statements_url(client.endpoint_url), LrsSender(authorization)
    else:
        url, sender = client.endpoint_url, CaliperSender(authorization, sensor_id(settings))
    sender.headers = {**dict(extra), **sender.headers}  # names rthub sets are refused as extra headers
    return url, sender
