"""Can each delivering client be served? Its state, its credential, its URL and a harmless request.

A webhook or Caliper endpoint gets a `HEAD` (neither standard defines a read, so any HTTP answer shows
the endpoint is reachable over DNS, TCP and TLS; the credential is not checked); an LRS gets the xAPI
About resource and then `GET statements?limit=1` with the client's credential, which the standard
allows and which an LRS refuses with 401/403 when the credential is wrong. Requests to an LRS or a
Caliper endpoint carry the client's headers (credential and extra endpoint headers) as deliveries do, so
a gateway that wants its header lets the check through. Requests go to the address the delivery-time
guard approved, as deliveries do.
"""

from __future__ import annotations

import asyncio

import httpx

from auth.addresses import Unreachable
from auth.clients import ENDPOINT_DELIVERIES, Client
from auth.endpoint_credentials import CredentialError
from hub.config import Settings
from hub.delivery.webhook.clients import WEBHOOK_DELIVERIES
from hub.delivery.webhook.formats.endpoint import endpoint_sender
from hub.delivery.webhook.formats.lrs import XAPI_VERSION
from hub.delivery.webhook.ssrf import Target, UnsafeURL, resolve
from hub.doctor.findings import Finding, Severity

TIMEOUT = 10.0


def delivering(client: Client) -> bool:
    """Clients whose events go out by HTTP (webhook, fallback, LRS, Caliper endpoint)."""
    return client.active and client.delivery in WEBHOOK_DELIVERIES


async def check_clients(clients: list[Client], settings: Settings) -> list[Finding]:
    """One finding or more per delivering client, probed side by side."""
    async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as http:
        checks = [check_client(client, settings, http) for client in clients if delivering(client)]
        found = await asyncio.gather(*checks)
    return [finding for findings in found for finding in findings]


async def check_client(client: Client, settings: Settings, http: httpx.AsyncClient) -> list[Finding]:
    endpoint = client.delivery in ENDPOINT_DELIVERIES
    url = client.endpoint_url if endpoint else client.webhook_url
    subject = f"client {client.client_id} ({client.delivery} {url or 'no URL'})"
    findings = _state(client, subject)
    if not url:
        field = "endpoint_url" if endpoint else "webhook_url"
        return [*findings, Finding(subject, Severity.FAIL, f"no {field}: nothing can be delivered",
                                   f"set it: rthub clients update {client.client_id} --{field.replace('_', '-')} URL")]
    headers: dict[str, str] = {}
    if endpoint:
        try:
            url, sender = endpoint_sender(client, settings)
        except CredentialError as exc:
            fix = ("run the doctor and the hubs with the deployment's RTHUB_DATA_DIR, or enter the credential "
                   f"again: rthub clients rotate-endpoint-credential {client.client_id}")
            return [*findings, Finding(subject, Severity.FAIL, str(exc), fix)]
        headers = dict(getattr(sender, "headers", {}))
    try:
        target = await resolve(url, settings.private_access)
    except UnsafeURL as exc:
        if isinstance(exc.__cause__, Unreachable):  # DNS: the URL may be right and the resolver wrong
            return [*findings, Finding(subject, Severity.FAIL, f"deliveries would fail: {exc}",
                                       "check the host name and DNS as the hub resolves it; if the name is "
                                       f"wrong: rthub clients update {client.client_id}")]
        return [*findings, Finding(subject, Severity.FAIL, f"deliveries would be refused: {exc}",
                                   f"give the client a public URL: rthub clients update {client.client_id}")]
    try:
        if client.delivery == "lrs":
            findings.append(await _lrs(subject, client, target, headers, http))
        else:
            response = await _request(http, "HEAD", target, headers=headers)
            findings.append(_reachable(subject, client, response))
    except httpx.HTTPError as exc:
        findings.append(Finding(subject, Severity.FAIL, f"cannot reach {target.host}: {exc.__class__.__name__}: {exc}",
                                "check DNS, firewall and TLS between the hub and the endpoint"))
    return findings


def _state(client: Client, subject: str) -> list[Finding]:
    """A disabled or paused client holds or dead-letters its events whatever its endpoint says now."""
    reason = client.webhook_disabled_reason or "no reason recorded"
    if client.webhook_status == "disabled":
        return [Finding(subject, Severity.FAIL, f"delivery disabled: {reason}",
                        f"fix the endpoint, then POST /admin/clients/{client.client_id}/webhooks/enable "
                        "(or Enable on the admin page)")]
    if client.webhook_status == "paused":
        return [Finding(subject, Severity.FAIL, f"delivery paused, events held: {reason}",
                        f"enter working credentials: rthub clients rotate-endpoint-credential {client.client_id}")]
    return []


async def _lrs(subject: str, client: Client, target: Target, headers: dict[str, str],
               http: httpx.AsyncClient) -> Finding:
    """The About resource says which xAPI versions the LRS speaks; a one-statement read checks the credential."""
    base = target.url.rsplit("/statements", 1)[0]
    about = await _request(http, "GET", target, base + "/about", {**headers, "x-experience-api-version": XAPI_VERSION})
    if about.status_code == 200:
        versions = _versions(about)
        if versions and not any(version.startswith("1.0") for version in versions):
            return Finding(subject, Severity.FAIL, f"the LRS speaks xAPI {', '.join(versions)}, not 1.0.x",
                           "point the client at an xAPI 1.0.3 endpoint")
    read = await _request(http, "GET", target, target.url + "?limit=1", headers)
    if read.status_code in (401, 403):
        return Finding(subject, Severity.FAIL, f"the LRS refuses the client's credential (HTTP {read.status_code})",
                       f"rthub clients rotate-endpoint-credential {client.client_id} --endpoint-password ...")
    if read.status_code >= 500:
        return Finding(subject, Severity.FAIL, f"the LRS answers HTTP {read.status_code}",
                       "deliveries are retried; check the LRS")
    if read.status_code >= 400:
        return Finding(subject, Severity.WARN, f"reading one statement answered HTTP {read.status_code}",
                       "check that the endpoint URL is the LRS's xAPI base (POSTs go to {URL}statements)")
    return Finding(subject, Severity.OK, "LRS reachable, credential accepted")


def _reachable(subject: str, client: Client, response: httpx.Response) -> Finding:
    status = response.status_code
    if status == 410:
        return Finding(subject, Severity.FAIL, "the endpoint answers 410 Gone: the hub will disable delivery",
                       f"give the client a live URL: rthub clients update {client.client_id}")
    if status >= 500 and status != 501:  # 501: the receiver only does not implement HEAD
        return Finding(subject, Severity.WARN, f"reachable, but HEAD answered HTTP {status}",
                       "check the receiver; deliveries are retried")
    return Finding(subject, Severity.OK, f"reachable (HEAD answered HTTP {status}; credentials not checked)")


async def _request(http: httpx.AsyncClient, method: str, target: Target, url: str | None = None,
                   headers: dict[str, str] | None = None) -> httpx.Response:
    """One request to the approved address, with the original Host and TLS server name."""
    return await http.request(method, url or target.url, **target.request_options(headers or {}))


def _versions(response: httpx.Response) -> list[str]:
    try:
        found = response.json().get("version", [])
    except ValueError:
        return []
    return [str(item) for item in found] if isinstance(found, list) else []
