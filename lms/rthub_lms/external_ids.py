"""The LMS's external ids, mirrored into Redis for `lms-external-id` clients (docs/contract.md, "Actors").

The reference translator (event-routing-backends) names a learner by the LMS's own `ExternalId`
(edx-platform's `external_user_ids` app, one UUID per user and type: `xapi`, `caliper`). Only the LMS
can create one, so the plug-in does, inside the LMS: `ExternalIdMirror.ensure` runs before an event is
published, for the types the clients that may see it need (`PreemptiveFilter.external_id_types`; none
while no such client is active), gets or creates the learner's id through
`ExternalId.add_new_user_id(user, type_name)`, and writes user id -> external id to
`{prefix}extid:{type}` before the event, so the hub finds it when the event arrives. Nothing else about
the learner leaves the LMS. Ids already mirrored are remembered in-process, so a known learner costs
nothing; a new one costs one Redis read, and on a miss one get-or-create and one Redis write.

When Redis is away, ids wait in memory (bounded) and go out before the spooled events (`flush_pending`,
called by the spool flusher). A learner the mirror never got (an LMS process that died with them
pending, the first events before the filter's first load) is filled by this module as a command,
in the LMS, for every learner not yet mirrored:

    python -m rthub_lms.external_ids [--type xapi] [--type caliper] [--batch 1000]

(with the LMS's `DJANGO_SETTINGS_MODULE`; e.g. `tutor local run lms python -m rthub_lms.external_ids`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import redis

from rthub_lms.connect import connect, discover
from rthub_lms.keys import Prefixed, external_id_clients_key, external_ids_key
from rthub_lms.settings import PluginSettings

log = logging.getLogger("rthub.external_ids")

TYPES = ("xapi", "caliper")  # edx-platform's ExternalIdType.XAPI and .CALIPER
CACHE_SIZE = 100_000
MAX_PENDING = 100_000
BATCH = 1000

Lookup = Callable[[str, str], "str | None"]


def edx_lookup(user_id: str, type_name: str) -> str | None:
    """The learner's external id of `type_name`, created if it has none (edx-platform's get-or-create);
    None when the LMS has no such ExternalIdType."""
    from django.contrib.auth import get_user_model
    from openedx.core.djangoapps.external_user_ids.models import ExternalId

    user = get_user_model().objects.get(pk=int(user_id))
    external_id, _ = ExternalId.add_new_user_id(user, type_name)
    return str(external_id.external_user_id) if external_id is not None else None


class ExternalIdMirror:
    """Get-or-create a learner's external ids in the LMS and mirror them to Redis, once per process."""

    def __init__(
        self, client: redis.Redis | redis.RedisCluster, settings: Prefixed, lookup: Lookup | None = None,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self._client = client
        self._settings = settings
        self._lookup = lookup or edx_lookup
        self._cache_size = cache_size
        self._mirrored: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._pending: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()
        self.counts = {"mirrored": 0, "lookup_failed": 0, "pending_dropped": 0}

    def ensure(self, user_id: str, types: Iterable[str]) -> None:
        """Make sure Redis holds the learner's external id of each type before its event goes out. An
        LMS that cannot say (no such user, no such type) is logged and counted: the hub then refuses the
        event for those clients rather than send another id. Redis errors keep the id pending."""
        for id_type in types:
            key = (id_type, user_id)
            if key in self._mirrored:
                continue
            try:
                self.flush_pending()
                found = self._client.hget(external_ids_key(self._settings, id_type), user_id)
            except (redis.RedisError, OSError):
                found = None
                reachable = False
            else:
                reachable = True
            if found is not None:
                self._remember(key)
                continue
            external_id = self._external_id(user_id, id_type)
            if external_id is None:
                continue
            if reachable:
                try:
                    self._client.hset(external_ids_key(self._settings, id_type), user_id, external_id)
                    self._remember(key)
                    self.counts["mirrored"] += 1
                    continue
                except (redis.RedisError, OSError):
                    pass
            self._keep_pending(key, external_id)

    def flush_pending(self, client: redis.Redis | redis.RedisCluster | None = None) -> None:
        """Write the ids that waited for Redis (before any event that waited with them); raises Redis
        errors, the rest staying pending."""
        if not self._pending:
            return
        with self._lock:
            waiting = list(self._pending.items())
        target = client or self._client
        for (id_type, user_id), external_id in waiting:
            target.hset(external_ids_key(self._settings, id_type), user_id, external_id)
            with self._lock:
                self._pending.pop((id_type, user_id), None)
            self._remember((id_type, user_id))
            self.counts["mirrored"] += 1

    def _external_id(self, user_id: str, id_type: str) -> str | None:
        try:
            found = self._lookup(user_id, id_type)
        except Exception as exc:  # the LMS's own failure (no such user, its database): never the request's
            log.warning("no %s external id for LMS user %s: %s: %s", id_type, user_id, type(exc).__name__, exc)
            self.counts["lookup_failed"] += 1
            return None
        if found is None:
            log.warning("no %s external id for LMS user %s: the LMS has no ExternalIdType %r", id_type, user_id,
                        id_type)
            self.counts["lookup_failed"] += 1
        return found

    def _remember(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._mirrored[key] = None
            if len(self._mirrored) > self._cache_size:
                self._mirrored.popitem(last=False)

    def _keep_pending(self, key: tuple[str, str], external_id: str) -> None:
        with self._lock:
            self._pending[key] = external_id
            if len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)
                self.counts["pending_dropped"] += 1


def needed_types(client: redis.Redis | redis.RedisCluster, settings: Prefixed) -> list[str]:
    """The ExternalIdTypes active clients need now (the registry's `external-ids` projection)."""
    values = client.hvals(external_id_clients_key(settings))
    return sorted({value.decode() if isinstance(value, bytes) else value for value in values})


def fill(
    client: redis.Redis | redis.RedisCluster, settings: Prefixed, id_type: str, batch: int = BATCH,
    report: Callable[[str], None] = print,
) -> tuple[int, int]:
    """Mirror the external id of `id_type` of every LMS user not yet mirrored, creating the ids that do
    not exist (`ExternalId.batch_get_or_create_user_ids`); returns (users seen, ids mirrored now)."""
    from openedx.core.djangoapps.external_user_ids.models import ExternalId

    key = external_ids_key(settings, id_type)
    seen = mirrored = 0
    for users in _user_batches(batch):
        seen += len(users)
        held = client.hmget(key, [str(user.id) for user in users])
        missing = [user for user, value in zip(users, held, strict=True) if value is None]
        if not missing:
            continue
        created = ExternalId.batch_get_or_create_user_ids(missing, id_type)
        if created is None:
            raise LookupError(f"the LMS has no ExternalIdType {id_type!r}")
        mapping = {str(user_id): str(found.external_user_id) for user_id, found in created.items()}
        if mapping:
            client.hset(key, mapping=mapping)
        mirrored += len(mapping)
        report(f"{id_type}: {seen} users read, {mirrored} ids mirrored")
    return seen, mirrored


def _user_batches(batch: int) -> Iterator[list[Any]]:
    """Every LMS user, in id order, `batch` at a time (keyset pages: no OFFSET scans)."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.order_by("id")
    after = 0
    while True:
        page = list(users.filter(id__gt=after)[:batch])
        if not page:
            return
        yield page
        after = page[-1].id


def lms_options(settings: Any) -> Mapping[str, Any]:
    """The OPTIONS of the rthub backend in the LMS's `EVENT_TRACKING_BACKENDS` (wherever it is nested)."""
    stack: list[Any] = [getattr(settings, "EVENT_TRACKING_BACKENDS", {})]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            if str(item.get("ENGINE", "")).startswith("rthub_lms"):
                return item.get("OPTIONS") or {}
            stack.extend(item.values())
    return {}


def main(argv: list[str] | None = None) -> int:
    """Fill the mirror in the LMS; exit 0 done, 2 the LMS lacks a type, 3 Redis unreachable."""
    parser = argparse.ArgumentParser(
        prog="python -m rthub_lms.external_ids",
        description="Mirror the LMS's external ids of every learner not yet mirrored, for lms-external-id clients.",
    )
    parser.add_argument("--type", action="append", choices=TYPES, dest="types",
                        help="ExternalIdType to mirror; repeat (default: those active clients need)")
    parser.add_argument("--batch", type=int, default=BATCH, help="users per database page and Redis write")
    parser.add_argument("--redis-url", help="default: the rthub backend's OPTIONS in the LMS, else RTHUB_REDIS_URL")
    parser.add_argument("--redis-prefix", help="default: as --redis-url")
    args = parser.parse_args(argv)

    import django
    from django.conf import settings as django_settings

    django.setup()
    options = {**lms_options(django_settings)}
    options.update({k: v for k, v in (("redis_url", args.redis_url), ("redis_prefix", args.redis_prefix)) if v})
    settings = PluginSettings.from_options(options)
    client = connect(discover(settings.redis_url), socket_timeout=10, socket_connect_timeout=5)
    try:
        types = args.types or needed_types(client, settings)
        if not types:
            print("no active client needs external ids; nothing to mirror (give --type to mirror anyway)")
            return 0
        for id_type in types:
            seen, mirrored = fill(client, settings, id_type, args.batch)
            print(f"{id_type}: done, {seen} users, {mirrored} ids mirrored now, the others were already")
    except LookupError as exc:
        print(f"rthub_lms.external_ids: {exc}", file=sys.stderr)
        return 2
    except (redis.RedisError, OSError) as exc:
        print(f"rthub_lms.external_ids: cannot reach Redis at {settings.redis_url}: {exc}", file=sys.stderr)
        return 3
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
