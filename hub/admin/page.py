"""The admin web page at `/admin/`: server-rendered, signed session cookie, CSRF token on every form.

Admins sign in with an admin client's id and secret. The session cookie is signed (not encrypted), so it
holds only the admin's client id, a CSRF token and a one-shot notice; new secrets are rendered straight
into the response that created them and never stored.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from auth.clients import (
    ACTORS,
    CONSUMER_TYPES,
    DELIVERIES,
    SCOPES,
    TRANSLATORS,
    Client,
    ValidationError,
    grant_warnings,
)
from auth.endpoint_credentials import cipher
from auth.keyring import KeyMismatch
from auth.ratelimit import FailureLimiter
from auth.registry import ClientNotFound, ClientRegistry
from hub.admin.delivery import delivery_facts, disabled_by, settle_replay
from hub.config import Settings
from hub.control.presence import live_connections
from hub.delivery.webhook import retry
from hub.delivery.webhook.cli import moment
from hub.delivery.webhook.clients import as_shown
from hub.delivery.webhook.deadletters import list_deadletters, replay_by_client
from hub.delivery.webhook.health import delivery_health, delivery_log

HERE = Path(__file__).parent
SHOWN_DEADLETTERS = 200
SESSION_MAX_AGE = 8 * 3600
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class CsrfError(Exception):
    """A form arrived without the session's CSRF token."""


@dataclass(frozen=True, slots=True)
class Words:
    """How the page names a client's delivery, so an LRS is never called a webhook."""

    target: str  # where events go
    deliveries: str  # the health line's title
    delivered: str  # what a success is
    endpoint: str  # the thing that is enabled, disabled, retried


WEBHOOK_WORDS = Words("Webhook URL", "Webhook deliveries", "delivered", "webhook endpoint")
WORDS = {
    "webhook": WEBHOOK_WORDS,
    "websocket+webhook": WEBHOOK_WORDS,
    "lrs": Words("LRS endpoint", "LRS deliveries", "statements stored", "LRS"),
    "caliper-endpoint": Words("Caliper endpoint", "Caliper deliveries", "events stored", "Caliper endpoint"),
}


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A destructive action asked for its confirmation first (a page of its own, so it holds without
    JavaScript): what it does, and the button that does it."""

    title: str
    consequence: str
    button: str


def admin_page_app(settings: Settings, redis: aioredis.Redis) -> Starlette:
    """A sub-application for mounting at `/admin`, with its own session middleware."""
    page = AdminPage(settings, redis)
    routes = [
        Route("/", page.home, methods=["GET"]),
        Route("/login", page.login, methods=["POST"]),
        Route("/logout", page.logout, methods=["POST"]),
        Route("/clients", page.create, methods=["POST"]),
        Route("/clients/{client_id}", page.show, methods=["GET"]),
        Route("/clients/{client_id}", page.update, methods=["POST"]),
        Route("/clients/{client_id}/rotate", page.rotate, methods=["POST"]),
        Route("/clients/{client_id}/revoke", page.revoke, methods=["POST"]),
        Route("/clients/{client_id}/endpoint-credential", page.rotate_endpoint, methods=["POST"]),
        Route("/clients/{client_id}/deadletters/replay", page.replay, methods=["POST"]),
        Route("/clients/{client_id}/webhooks/enable", page.enable_webhooks, methods=["POST"]),
        Route("/clients/{client_id}/webhooks/disable", page.disable_webhooks, methods=["POST"]),
        Route("/clients/{client_id}/retry-now", page.retry_now, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(Sessions, settings=settings)],
        exception_handlers={KeyMismatch: page.key_mismatch},
    )


class Sessions:
    """The signed session cookie. Its secret derives from the endpoint key (the same in every hub, never
    rotated), which the hub checks against the registry as it starts, after this app is made: so the
    middleware is made on the first request."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.inner: SessionMiddleware | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.inner is None:
            self.inner = SessionMiddleware(
                self.app,
                secret_key=cipher(self.settings.endpoint_key_path).derive("rthub admin session"),
                session_cookie="rthub_admin",
                max_age=SESSION_MAX_AGE,
                path="/admin",
                same_site="strict",
                https_only=self.settings.issuer.startswith("https://"),
            )
        await self.inner(scope, receive, send)


class AdminPage:
    def __init__(self, settings: Settings, redis: aioredis.Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.registry = ClientRegistry(redis, settings)
        # The token endpoint's budgets (same Redis counters): alternating between the two gains nothing.
        self.failures = FailureLimiter(redis, settings)
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.templates.env.filters["when"] = _when
        self.templates.env.filters["unix_when"] = _unix_when
        self.templates.env.filters["age"] = lambda seconds: _span(time.time() - seconds)
        self.templates.env.filters["until"] = lambda seconds: _span(seconds - time.time())

    def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        base = request.scope.get("root_path", "")
        context.update(
            base=base,
            csrf=_csrf_token(request),
            notice=request.session.pop("notice", None),
            admin=request.session.get("admin"),
        )
        return self.templates.TemplateResponse(
            request, name, context, status_code=status_code, headers=SECURITY_HEADERS
        )

    async def key_mismatch(self, request: Request, exc: Exception) -> Response:
        """A credential write refused because this hub's endpoint key is not the registry's."""
        return self.render(request, "error.html", 500, message=str(exc))

    def redirect(self, request: Request, path: str, notice: str | None = None) -> Response:
        if notice:
            request.session["notice"] = notice
        return RedirectResponse(request.scope.get("root_path", "") + path, status_code=303)

    async def _admin(self, request: Request) -> Client | None:
        """The signed-in admin, re-checked on every request so revoking it ends its sessions."""
        client_id = request.session.get("admin")
        if not client_id:
            return None
        client = await self.registry.get(client_id)
        if client is None or not client.active or "admin" not in client.scopes:
            request.session.pop("admin", None)
            return None
        return client

    async def _form(self, request: Request) -> FormData:
        form = await request.form()
        expected = request.session.get("csrf", "")
        sent = form.get("csrf")
        if not expected or not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
            raise CsrfError
        return form

    async def _guard(self, request: Request) -> FormData | Response:
        """A form post from a signed-in admin with the right CSRF token, or the page that refuses it."""
        try:
            form = await self._form(request)
        except CsrfError:
            message = "The form expired or did not come from this page. Go back, reload and try again."
            return self.render(request, "error.html", 403, message=message)
        if await self._admin(request) is None:
            return self.redirect(request, "/", "Please sign in.")
        return form

    async def home(self, request: Request) -> Response:
        if await self._admin(request) is None:
            return self.render(request, "login.html")
        return await self._clients_page(request)

    async def _clients_page(self, request: Request, status: int = 200, **extra: Any) -> Response:
        """The client list, with live connection counts and webhook delivery health."""
        clients = [as_shown(client, self.settings) for client in await self.registry.list_all()]
        live = await live_connections(self.redis, self.settings, [c.client_id for c in clients])
        health = await delivery_health(self.redis, self.settings, [c.client_id for c in clients])
        return self.render(
            request, "clients.html", status, clients=clients, live=live, health=health, **_choices(), **extra
        )

    async def _client_page(self, request: Request, client: Client, status: int = 200, **extra: Any) -> Response:
        """One client, with its live connection count, delivery health and delivery log, and what waits
        for it: queue, the batch being retried, dead letters; named for its delivery (`WORDS`)."""
        live = await live_connections(self.redis, self.settings, [client.client_id])
        health = await delivery_health(self.redis, self.settings, [client.client_id])
        attempts = await delivery_log(self.redis, self.settings, client.client_id)
        facts = await delivery_facts(self.redis, self.settings, client)
        dead = await list_deadletters(self.redis, self.settings, client.client_id, SHOWN_DEADLETTERS) \
            if facts["deadletters"] else []
        return self.render(
            request, "client.html", status, client=as_shown(client, self.settings), live=live.get(client.client_id, 0),
            health=health.get(client.client_id), attempts=attempts, words=WORDS.get(client.delivery),
            queue=facts["queue"], retry=facts["retry"], stored_deadletters=facts["deadletters"], deadletters=dead,
            **_choices(), **extra,
        )

    async def _confirmed(self, request: Request, ask: Callable[[Client], Confirmation]) -> Client | Response:
        """The client of an action that asks first, once the admin confirmed it; else the page to answer
        (the confirmation, a sign-in, or 404)."""
        form = await self._guard(request)
        if isinstance(form, Response):
            return form
        client = await self.registry.get(request.path_params["client_id"])
        if client is None:
            return self.render(request, "error.html", 404, message="No such client.")
        page = await self._confirm(request, form, client, ask(client))
        return client if page is None else page

    async def _confirm(self, request: Request, form: FormData, client: Client, asked: Confirmation) -> Response | None:
        """The confirmation page, unless this post is the confirmation (`confirm=yes`)."""
        if form.get("confirm") == "yes":
            return None
        return self.render(request, "confirm.html", client=client, asked=asked, action=request.url.path)

    async def login(self, request: Request) -> Response:
        try:
            form = await self._form(request)
        except CsrfError:
            return self.render(request, "login.html", 403, login_error="Your sign-in form expired; please try again.")
        client_id = str(form.get("client_id", "")).strip()
        secret = str(form.get("client_secret", ""))
        address = request.client.host if request.client else None
        wait = await self.failures.retry_after(client_id or None, address)
        if wait:
            response = self.render(
                request, "login.html", 429, client_id=client_id,
                login_error=f"Too many failed sign-ins; try again in {wait} seconds.",
            )
            response.headers["Retry-After"] = str(wait)
            return response
        client = await self.registry.authenticate(client_id, secret) if client_id and secret else None
        if client is None or "admin" not in client.scopes:
            await self.failures.failed(client_id or None, address)
            return self.render(
                request,
                "login.html",
                401,
                login_error="Unknown client, wrong secret, or not an admin client.",
                client_id=client_id,
            )
        request.session.clear()
        request.session.update(admin=client.client_id, csrf=secrets.token_urlsafe(32))
        return self.redirect(request, "/", f"Signed in as {client.name}.")

    async def logout(self, request: Request) -> Response:
        try:
            await self._form(request)
        except CsrfError:
            return self.redirect(request, "/")
        request.session.clear()
        return self.redirect(request, "/", "Signed out.")

    async def create(self, request: Request) -> Response:
        form = await self._guard(request)
        if isinstance(form, Response):
            return form
        fields = _client_fields(form)
        try:
            client, secret = await self.registry.create(**fields)
        except ValidationError as exc:
            return await self._clients_page(request, 422, error=exc, values=dict(form))
        return self.render(
            request, "secret.html", client=client, secret=secret, created=True, warnings=grant_warnings(fields)
        )

    async def show(self, request: Request) -> Response:
        if await self._admin(request) is None:
            return self.redirect(request, "/", "Please sign in.")
        client = await self.registry.get(request.path_params["client_id"])
        if client is None:
            return self.render(request, "error.html", 404, message="No such client.")
        return await self._client_page(request, client)

    async def update(self, request: Request) -> Response:
        form = await self._guard(request)
        if isinstance(form, Response):
            return form
        client_id = request.path_params["client_id"]
        fields = _client_fields(form)
        try:
            client = await self.registry.update(client_id, **fields)
        except ClientNotFound:
            return self.render(request, "error.html", 404, message="No such client.")
        except ValidationError as exc:
            return await self._client_page(request, await self.registry.require(client_id), 422, error=exc,
                                           values=dict(form))
        warnings = grant_warnings(fields)
        if warnings:  # shown on the page itself: a list may not fit in the session cookie a redirect needs
            return await self._client_page(request, client, warnings=warnings)
        return self.redirect(request, f"/clients/{client_id}", "Saved.")

    async def rotate(self, request: Request) -> Response:
        client = await self._confirmed(request, lambda client: Confirmation(
            f"Rotate the secret of {client.name}?",
            "A new client secret is shown once. The current one keeps working for the grace period; then "
            "every program still using it is refused its tokens.",
            "Rotate secret",
        ))
        if isinstance(client, Response):
            return client
        try:
            client, secret = await self.registry.rotate_secret(client.client_id)
        except ClientNotFound:
            return self.render(request, "error.html", 404, message="No such client.")
        return self.render(request, "secret.html", client=client, secret=secret, created=False)

    async def rotate_endpoint(self, request: Request) -> Response:
        form = await self._guard(request)
        if isinstance(form, Response):
            return form
        client_id = request.path_params["client_id"]
        values = {key: str(form[key]).strip() for key in _ENDPOINT_CREDENTIAL_FORM if str(form.get(key, "")).strip()}
        try:
            await self.registry.rotate_endpoint_credential(client_id, **values)
        except ClientNotFound:
            return self.render(request, "error.html", 404, message="No such client.")
        except ValidationError as exc:
            return await self._client_page(request, await self.registry.require(client_id), 422, error=exc)
        return self.redirect(request, f"/clients/{client_id}", "Endpoint credential rotated.")

    async def revoke(self, request: Request) -> Response:
        client = await self._confirmed(request, lambda client: Confirmation(
            f"Revoke {client.name}?",
            "It gets no new tokens, its live connections are closed within a second, and nothing more is "
            "delivered to it. This cannot be undone from this page.",
            "Revoke client",
        ))
        if isinstance(client, Response):
            return client
        try:
            client = await self.registry.revoke(client.client_id)
        except ClientNotFound:
            return self.render(request, "error.html", 404, message="No such client.")
        return self.redirect(request, "/", f"Revoked {client.name}; its live connections are being closed.")

    async def replay(self, request: Request) -> Response:
        """Re-queue the client's dead letters: the chosen ones (`ids`), else those that failed between two
        times (either may be left empty); with `enable`, enable a disabled endpoint too."""
        form = await self._guard(request)
        if isinstance(form, Response):
            return form
        client_id = request.path_params["client_id"]
        chosen = [str(item) for item in form.getlist("ids")]
        try:
            client = await self.registry.require(client_id)
            since, until = (moment(str(form[name])) if form.get(name) else None for name in ("since", "until"))
        except ClientNotFound:
            return self.render(request, "error.html", 404, message="No such client.")
        except ValueError:
            return self.redirect(request, f"/clients/{client_id}", "Times must be ISO 8601 (UTC).")
        if form.get("selection") == "chosen" and not chosen:
            return self.redirect(request, f"/clients/{client_id}", "Choose the dead letters to replay first.")
        moved = await replay_by_client(self.redis, self.settings, chosen or None, client_id, since, until)
        done = await settle_replay(self.registry, moved, form.get("enable") == "yes")
        words = WORDS.get(client.delivery, WEBHOOK_WORDS)
        letters = f"{done['replayed']} dead letter{'' if done['replayed'] == 1 else 's'}"
        if done["enabled"]:
            notice = f"Delivery to the {words.endpoint} enabled; queued {letters} for delivery."
        elif done["waiting"]:
            wait = "it waits" if done["replayed"] == 1 else "they wait"
            notice = f"Queued {letters}; {wait} until delivery to the {words.endpoint} is enabled."
        else:
            notice = f"Queued {letters} for delivery again."
        return self.redirect(request, f"/clients/{client_id}", notice)

    async def enable_webhooks(self, request: Request) -> Response:
        form = await self._guard(request)
        if isinstance(form, Response):
            return form
        client_id = request.path_params["client_id"]
        try:
            client = await self.registry.require(client_id)
        except ClientNotFound:
            return self.render(request, "error.html", 404, message="No such client.")
        await self.registry.enable_webhooks(client_id)
        words = WORDS.get(client.delivery, WEBHOOK_WORDS)
        return self.redirect(request, f"/clients/{client_id}", f"Delivery to the {words.endpoint} enabled again.")

    async def disable_webhooks(self, request: Request) -> Response:
        client = await self._confirmed(request, lambda client: Confirmation(
            f"Disable delivery to the {WORDS.get(client.delivery, WEBHOOK_WORDS).endpoint} of {client.name}?",
            "Nothing more is sent until delivery is enabled again. Then what is queued now, and what is "
            "published meanwhile (as far back as the event stream keeps it), is delivered in order.",
            "Disable delivery",
        ))
        if isinstance(client, Response):
            return client
        words = WORDS.get(client.delivery, WEBHOOK_WORDS)
        await self.registry.disable_webhooks(client.client_id, disabled_by(str(request.session.get("admin"))))
        return self.redirect(request, f"/clients/{client.client_id}", f"Delivery to the {words.endpoint} disabled.")

    async def retry_now(self, request: Request) -> Response:
        """Attempt the batch that waits for its next retry now (on whichever hub instance delivers it)."""
        form = await self._guard(request)
        if isinstance(form, Response):
            return form
        client_id = request.path_params["client_id"]
        if await self.registry.get(client_id) is None:
            return self.render(request, "error.html", 404, message="No such client.")
        if await retry.retry_now(self.redis, self.settings, client_id):
            return self.redirect(request, f"/clients/{client_id}", "Retrying now.")
        return self.redirect(request, f"/clients/{client_id}", "Nothing was waiting for a retry.")


_ENDPOINT_CREDENTIAL_FORM = ("endpoint_username", "endpoint_password", "endpoint_token")


def _csrf_token(request: Request) -> str:
    if "csrf" not in request.session:
        request.session["csrf"] = secrets.token_urlsafe(32)
    return request.session["csrf"]


def _client_fields(form: FormData) -> dict[str, Any]:
    """Form fields to registry fields; the grant arrives as JSON text, scopes as checkboxes."""
    values: dict[str, Any] = {}
    for key in ("name", "type", "translator", "actor", "delivery", "webhook_url", "endpoint_url", "endpoint_username"):
        if key in form:
            values[key] = str(form[key]).strip()
    for key in ("endpoint_password", "endpoint_token", "webhook_batch_max", "webhook_batch_wait"):
        if str(form.get(key, "")).strip():
            values[key] = str(form[key]).strip()
    if str(form.get("endpoint_headers", "")).strip():  # blank keeps them, as credentials
        values["endpoint_headers"] = str(form["endpoint_headers"])
    elif "clear_endpoint_headers" in form:
        values["endpoint_headers"] = []
    if "grant" in form:
        text = str(form["grant"]).strip()
        values["grant"] = text or "[]"
    scopes = [str(item) for item in form.getlist("scopes")]
    if scopes or "scopes_present" in form:
        values["scopes"] = scopes
    return values


def _choices() -> dict[str, Any]:
    return {
        "types": CONSUMER_TYPES,
        "translators": TRANSLATORS,
        "actors": ACTORS,
        "deliveries": DELIVERIES,
        "scopes": SCOPES,
        "grant_text": _grant_text,
    }


def _grant_text(grant: list[dict[str, Any]]) -> str:
    """One rule per line: short enough to read, still valid JSON to edit."""
    if not grant:
        return "[]"
    return "[\n" + ",\n".join("  " + json.dumps(rule) for rule in grant) + "\n]"


def _when(iso: str) -> str:
    return iso.replace("T", " ").replace("+00:00", " UTC")


def _unix_when(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(seconds: float) -> str:
    """A duration as people read it: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    seconds = max(seconds, 0)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
