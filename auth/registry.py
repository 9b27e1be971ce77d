"""The client registry in Redis, the only reader and writer of client records.

The set `{prefix}{registry}:clients`, one hash `{prefix}{registry}:client:{id}` per client, the
`{prefix}{registry}:grants` projection (active clients' grants, for the LMS plug-in's preemptive
filter), the `{prefix}{registry}:external-ids` projection (which ExternalIdType each active
`lms-external-id` client needs, for the plug-in's external-id mirror), and a notice on
`{prefix}{registry}:changes` after every write so hub instances and plug-ins re-evaluate.

Every write that sends a notice also increments `{prefix}{registry}:interest` in its own transaction,
so the interest version has moved before the write is answered: the plug-in's preemptive filter
compares it with the version its grants were loaded at before it drops an event (rthub_lms/filter.py),
which a lost or late notice cannot fool.

A record also says from which event stream position its webhook delivery is routed (`routed_from`:
the stream's newest cursor, read before the write that creates the client, changes its delivery or
grant, or enables its endpoint again), so an event published once the write is answered reaches the
client however late a hub instance learns of the change (docs/webhooks.md, "New clients").
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import redis.asyncio as aioredis
from redis.exceptions import RedisError, WatchError

from auth.clients import (
    CREDENTIAL_FIELDS,
    Client,
    EndpointCredential,
    ValidationError,
    check_delivery,
    check_url_addresses,
    validate_fields,
)
from auth.endpoint_credentials import checked_cipher
from auth.identity import ClientIdentity
from auth.passwords import hash_secret, needs_upgrade, new_secret, new_webhook_secret, verify_secret
from auth.settings import AuthSettings
from rthub_lms.keys import (
    active_grants_key,
    changes_channel,
    client_key,
    client_keys,
    clients_key,
    external_id_clients_key,
    grant_changes,
    interest_version_key,
    stream_key,
)

# Grant changes kept per client for resumes (`grant_changes`); a resume from before the oldest kept one
# judges the events before it by the grant that followed.
GRANT_CHANGES_KEPT = 16

# Compare-and-set of one hash field, so a hash upgrade never overwrites a rotation that raced it.
_REPLACE_IF_EQUAL = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return -1
"""


class ClientNotFound(LookupError):
    """No client with that id."""

    def __init__(self, client_id: str) -> None:
        super().__init__(f"no client {client_id!r}")
        self.client_id = client_id


class ClientRegistry:
    """Create, read, change and revoke clients; secrets are hashed before they reach Redis."""

    def __init__(self, redis: aioredis.Redis, settings: AuthSettings) -> None:
        self.redis = redis
        self.settings = settings

    def _key(self, client_id: str) -> str:
        return client_key(self.settings, client_id)

    async def create(self, **values: Any) -> tuple[Client, str]:
        """Issue a client; returns it with its secret, which exists in clear only in this return value."""
        for required in ("name", "type", "translator"):
            if required not in values:
                raise ValidationError(required, "required")
        clean = validate_fields(values)
        await check_url_addresses(clean, self.settings.private_access)
        credential = {key: clean.pop(key) for key in CREDENTIAL_FIELDS if key in clean}
        headers = clean.pop("endpoint_headers", None)
        secret = new_secret()
        now = _now()
        client = Client(
            client_id="cl_" + secrets.token_hex(10),
            webhook_secret=new_webhook_secret(),
            secret_hash=hash_secret(secret),
            created_at=now,
            updated_at=now,
            routed_from=await self.stream_tip(),
            **clean,
        )
        client = await self._with_headers(await self._with_credential(client, credential), headers)
        check_delivery(client)
        await self._save(client)
        return client, secret

    async def get(self, client_id: str) -> Client | None:
        data = await self.redis.hgetall(self._key(client_id))
        if not data:
            return None
        return Client.from_hash(client_id, {_text(k): _text(v) for k, v in data.items()})

    async def require(self, client_id: str) -> Client:
        client = await self.get(client_id)
        if client is None:
            raise ClientNotFound(client_id)
        return client

    async def list_all(self) -> list[Client]:
        """Every client, oldest first, read in one round trip."""
        ids = sorted(_text(item) for item in await self.redis.smembers(clients_key(self.settings)))
        async with self.redis.pipeline(transaction=False) as pipe:
            for client_id in ids:
                pipe.hgetall(self._key(client_id))
            rows = await pipe.execute()
        clients = [
            Client.from_hash(client_id, {_text(k): _text(v) for k, v in row.items()})
            for client_id, row in zip(ids, rows, strict=True)
            if row
        ]
        return sorted(clients, key=lambda c: (c.created_at, c.client_id))

    async def compare(self, clients: list[Client]) -> dict[str, str]:
        """How each client stands against the stored record of its id: `new`, `same` or `differs`
        (what a registry import would do), read in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for client in clients:
                pipe.hgetall(self._key(client.client_id))
            rows = await pipe.execute()
        standing = {}
        for client, row in zip(clients, rows, strict=True):
            stored = Client.from_hash(client.client_id, {_text(k): _text(v) for k, v in row.items()}) if row else None
            standing[client.client_id] = "new" if stored is None else "same" if stored == client else "differs"
        return standing

    async def restore(self, clients: list[Client]) -> None:
        """Write backed-up records as they are (the same hashes, webhook secrets and encrypted endpoint
        credentials: nothing is issued anew), then rebuild the grants projection. Each save sends its
        change notice, so running hubs and plug-ins pick the clients up."""
        for client in clients:
            await self._save(client)
        await self.sync_active_grants()

    async def update(self, client_id: str, **values: Any) -> Client:
        clean = validate_fields(values)
        await check_url_addresses(clean, self.settings.private_access)
        credential = {key: clean.pop(key) for key in CREDENTIAL_FIELDS if key in clean}
        headers = clean.pop("endpoint_headers", None)
        before = await self.require(client_id)
        client = await self._with_credential(replace(before, **clean, updated_at=_now()), credential)
        client = await self._with_headers(client, headers)
        if client.webhook_status == "paused" and _endpoint(client) != _endpoint(before):
            client = replace(client, webhook_status="", webhook_disabled_reason="")
        tip = await self.stream_tip() if (client.delivery, client.grant) != (before.delivery, before.grant) else ""
        if tip and client.webhook_status != "disabled":
            client = replace(client, routed_from=tip)  # disabled: enabling catches up
        check_delivery(client)
        if client.grant != before.grant:
            # Recorded before the save sends its change notice, so a socket closed by that notice resumes
            # knowing it; a save that then fails leaves a record of a grant still current, which judges nothing.
            key = grant_changes(self.settings, client_id)
            async with self.redis.pipeline(transaction=True) as pipe:  # the client's slot
                pipe.rpush(key, json.dumps([tip, before.grant]))
                pipe.ltrim(key, -GRANT_CHANGES_KEPT, -1)
                await pipe.execute()
        await self._save(client)
        return client

    async def grant_changes(self, client_id: str) -> list[tuple[str, list[dict[str, Any]]]]:
        """The client's last grant changes, oldest first: (the stream's newest cursor just before the
        change, the grant until then). What was published at or before that cursor was published under
        that grant (the change read the tip before it saved: an event between the two is judged by the
        grant that followed)."""
        rows = await self.redis.lrange(grant_changes(self.settings, client_id), 0, -1)
        return [(cursor, grant) for cursor, grant in map(json.loads, rows) if cursor]

    async def rotate_endpoint_credential(self, client_id: str, **values: Any) -> Client:
        """New endpoint password (with optional username) or token; resumes a client paused on 401/403."""
        if not any(key in values for key in CREDENTIAL_FIELDS):
            raise ValidationError("endpoint_password", "give endpoint_password or endpoint_token")
        allowed = set(EndpointCredential.__annotations__)
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ValidationError(unknown[0], f"unknown field; allowed: {', '.join(sorted(allowed))}")
        return await self.update(client_id, **values)

    async def pause_endpoint(self, client_id: str, reason: str) -> None:
        """Stop sending to an endpoint that refused the credentials (401/403); its queue is kept."""
        await self._set_webhook_status(client_id, "paused", reason)

    async def _with_credential(self, client: Client, credential: dict[str, str]) -> Client:
        """Encrypt a new endpoint password or token into the record; the clear value goes no further.

        Only under the registry's endpoint key (`keyring.KeyMismatch` otherwise): a credential encrypted
        with another key would never decrypt in the hub, and its events would never be delivered.
        """
        if not credential:
            return client
        if len(credential) > 1:
            raise ValidationError("endpoint_token", "give either endpoint_password or endpoint_token, not both")
        (kind, value), = credential.items()
        if not value:
            raise ValidationError(kind, "must not be empty")
        if kind == "endpoint_password" and not client.endpoint_username:
            raise ValidationError("endpoint_username", "required with endpoint_password (HTTP Basic)")
        encrypted = (await checked_cipher(self.redis, self.settings)).encrypt(value)
        if kind == "endpoint_token":
            return replace(client, endpoint_auth="bearer", endpoint_username="", endpoint_credential=encrypted)
        return replace(client, endpoint_auth="basic", endpoint_credential=encrypted)

    async def _with_headers(self, client: Client, headers: list[list[str]] | None) -> Client:
        """Encrypt new endpoint headers into the record (None: unchanged, []: none), under the registry's
        endpoint key as credentials are; only their names stay readable."""
        if headers is None:
            return client
        sealed = (await checked_cipher(self.redis, self.settings)).seal_headers(headers) if headers else ""
        return replace(client, endpoint_headers=sealed, endpoint_header_names=[name for name, _ in headers])

    async def rotate_secret(self, client_id: str) -> tuple[Client, str]:
        """New secret now; the old one keeps working for `settings.secret_grace_period` seconds."""
        client = await self.require(client_id)
        secret = new_secret()
        grace = self.settings.secret_grace_period
        client = replace(
            client,
            secret_hash=hash_secret(secret),
            previous_secret_hash=client.secret_hash if grace > 0 else "",
            previous_secret_expires=int(time.time()) + grace if grace > 0 else 0,
            updated_at=_now(),
        )
        await self._save(client)
        return client, secret

    async def revoke(self, client_id: str) -> Client:
        client = replace(await self.require(client_id), status="revoked", updated_at=_now())
        await self._save(client)
        return client

    async def disable_webhooks(self, client_id: str, reason: str, routed_from: str | None = None) -> None:
        """Stop webhook delivery for a client (its endpoint said 410 Gone, the breaker or an admin
        stopped it) and tell every hub instance. Its `routed_from` becomes `routed_from` (default: the
        stream's newest cursor): enabling it again catches it up from there, so what was published
        meanwhile is not lost."""
        await self._set_webhook_status(client_id, "disabled", reason, routed_from)

    async def enable_webhooks(self, client_id: str) -> None:
        """Undo `disable_webhooks` (an admin says the endpoint is back) and tell every hub instance."""
        await self._set_webhook_status(client_id, "", "")

    async def _set_webhook_status(
        self, client_id: str, status: str, reason: str, routed_from: str | None = None
    ) -> None:
        """Write delivery's own status fields, then send the change notice. Disabling notes where the
        stream stands in `routed_from`, which clearing a disable keeps (routing catches the client up
        from there, up to the stream's retention); clearing a pause routes from now on again."""
        key = self._key(client_id)
        if status:
            fields = {"webhook_status": status, "webhook_disabled_reason": reason}
            if status == "disabled":
                fields["routed_from"] = routed_from or await self.stream_tip()
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=fields)
                pipe.incr(interest_version_key(self.settings))
                await pipe.execute()
        else:
            was_disabled = await self.redis.hget(key, "webhook_status") in (b"disabled", "disabled")
            tip = await self.stream_tip()
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(key, "webhook_status", "webhook_disabled_reason")
                if not was_disabled:
                    pipe.hset(key, "routed_from", tip)
                pipe.incr(interest_version_key(self.settings))
                await pipe.execute()
        await self._notify(client_id)

    async def stream_tip(self) -> str:
        """The event stream's newest cursor ("0-0" while it is empty): what a write that starts a
        client's webhook delivery records as `routed_from`."""
        rows = await self.redis.xrevrange(stream_key(self.settings), count=1)
        return _text(rows[0][0]) if rows else "0-0"

    async def delete(self, client_id: str) -> None:
        """Remove the client and everything kept for it: queued webhooks, presence, delivery state."""
        await self.require(client_id)
        async with self.redis.pipeline(transaction=True) as pipe:  # the registry's slot
            pipe.delete(self._key(client_id))
            pipe.srem(clients_key(self.settings), client_id)
            pipe.hdel(active_grants_key(self.settings), client_id)
            pipe.hdel(external_id_clients_key(self.settings), client_id)
            pipe.incr(interest_version_key(self.settings))
            await pipe.execute()
        await self.redis.delete(*client_keys(self.settings, client_id))  # the client's slot
        await self._notify(client_id)

    async def authenticate(self, client_id: str, secret: str) -> Client | None:
        """The active client whose current (or still-in-grace previous) secret is `secret`."""
        client = await self.get(client_id)
        if client is None or not client.active:
            return None
        if not has_legacy_hash(client):
            return client if matched_hash(client, secret) else None
        field = await anyio.to_thread.run_sync(matched_hash, client, secret)
        if field is None:
            return None
        await self.upgrade_hash(client, field, secret)
        return client

    async def upgrade_hash(self, client: Client, field: str, secret: str) -> None:
        """Replace a legacy hash that `secret` just matched with a current one, unless it changed meanwhile."""
        old = getattr(client, field)
        if needs_upgrade(old):
            await self.redis.eval(_REPLACE_IF_EQUAL, 1, self._key(client.client_id), field, old, hash_secret(secret))

    async def identity(self, client_id: str) -> ClientIdentity | None:
        """What the hub needs to serve a socket; None when the client is gone or revoked."""
        client = await self.get(client_id)
        if client is None or not client.active:
            return None
        return ClientIdentity(
            client_id=client.client_id,
            consumer_type=client.type,
            translator=client.translator,
            grant=client.grant,
            delivery=client.delivery,
            scopes=tuple(client.scopes),
            actor=client.actor,
        )

    async def sync_active_grants(self, retry_every: float = 1.0) -> None:
        """Rebuild the `grants` and `external-ids` projections from the records (at hub start: they may
        predate them).

        The rebuild WATCHes the client set and the projection, so a client saved while the records
        are read (a `create` racing a hub start) makes it start again instead of being erased from
        the projection, where the LMS-side filter would then drop its events.
        """
        projection, members = active_grants_key(self.settings), clients_key(self.settings)
        external = external_id_clients_key(self.settings)
        while True:
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    await pipe.watch(members, projection, external)
                    clients = await self.list_all()
                    active = {c.client_id: _grant_json(c) for c in clients if c.active}
                    types = {c.client_id: c.external_id_type for c in clients if c.active and c.external_id_type}
                    pipe.multi()
                    pipe.delete(projection, external)
                    if active:
                        pipe.hset(projection, mapping=active)
                    if types:
                        pipe.hset(external, mapping=types)
                    pipe.incr(interest_version_key(self.settings))
                    await pipe.execute()
                await self._notify("")
                return
            except WatchError:
                continue
            except (RedisError, OSError):
                await asyncio.sleep(retry_every)

    async def _save(self, client: Client) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(client.client_id), mapping=client.to_hash())
            pipe.sadd(clients_key(self.settings), client.client_id)
            if client.active:
                pipe.hset(active_grants_key(self.settings), client.client_id, _grant_json(client))
            else:
                pipe.hdel(active_grants_key(self.settings), client.client_id)
            if client.active and client.external_id_type:
                pipe.hset(external_id_clients_key(self.settings), client.client_id, client.external_id_type)
            else:
                pipe.hdel(external_id_clients_key(self.settings), client.client_id)
            pipe.incr(interest_version_key(self.settings))
            await pipe.execute()
        await self._notify(client.client_id)

    async def announce(self, client_id: str) -> None:
        """Ask every hub instance to look at a client again though its record did not change (webhook
        delivery: an admin's "retry now" moved the next attempt forward)."""
        await self._notify(client_id)

    async def _notify(self, client_id: str) -> None:
        """Tell every hub instance and plug-in that a client changed, once the change is stored.

        Sent after the transaction, not in it: a publish is not a key, so a cluster would not run it in
        the registry's slot. A process dying in between loses the notice; readers reload on their timer,
        and the plug-in's filter also sees the interest version the transaction incremented.
        """
        await self.redis.publish(changes_channel(self.settings), client_id)


def matched_hash(client: Client, secret: str) -> str | None:
    """Which stored hash `secret` matches: `secret_hash`, or `previous_secret_hash` until its grace
    period ends; None when neither. Blocking only while a legacy (scrypt) hash is involved."""
    if verify_secret(secret, client.secret_hash):
        return "secret_hash"
    if (
        client.previous_secret_hash
        and time.time() < client.previous_secret_expires
        and verify_secret(secret, client.previous_secret_hash)
    ):
        return "previous_secret_hash"
    return None


def has_legacy_hash(client: Client) -> bool:
    """True when checking this client's secret would run a slow legacy KDF."""
    return needs_upgrade(client.secret_hash) or needs_upgrade(client.previous_secret_hash)


def _endpoint(client: Client) -> tuple[str, str, str, str, str]:
    return (client.endpoint_url, client.endpoint_auth, client.endpoint_username, client.endpoint_credential,
            client.endpoint_headers)


def _grant_json(client: Client) -> str:
    return json.dumps(client.grant, separators=(",", ":"))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
