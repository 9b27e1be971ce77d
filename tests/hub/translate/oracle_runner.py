"""Run the Open edX reference translator as a black box: raw events in, its translations out (JSON lines).

Runs in the reference's own virtualenv (`tests/hub/translate/oracle.py` builds it), never imported by rthub:

    ~/.cache/rthub-test-venvs/reference-venv/bin/python tests/hub/translate/oracle_runner.py --actor-id ID

Each stdin line is `{"translator": "xapi" | "caliper", "event": RAW}`; each stdout line answers it in
order: `{"output": [...]}` (a list, one item per statement or event), `{"unsupported": true}` (no
transformer registered), or `{"error": "ValueError: ..."}`. The first line written is
`{"ready": {"xapi": [names], "caliper": [names]}}`, the reference's registries.

Outside the LMS the reference needs three edx-platform modules; they are stubbed here with what a
deployment provides: every user exists, every user's external id (xAPI and Caliper alike) is
`--actor-id`, and every course is named `--course-name`.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import uuid


def stub_platform(actor_id: str, course_name: str) -> None:
    """Install the three edx-platform modules the reference imports, before it imports them."""

    class ExternalIdType:
        XAPI = "xapi"
        CALIPER = "caliper"
        LTI = "lti"

    class ExternalId:
        @staticmethod
        def add_new_user_id(user: object, type_name: str) -> tuple[object, bool]:
            return types.SimpleNamespace(external_user_id=uuid.UUID(actor_id)), True

    def get_course_overviews(course_keys: list[object]) -> list[dict[str, str]]:
        return [{"display_name": course_name, "id": str(key)} for key in course_keys]

    def get_potentially_retired_user_by_username(username: str) -> object:
        from django.contrib.auth import get_user_model

        return get_user_model()(username=username, email=f"{username}@example.invalid")

    modules = {
        "openedx.core.djangoapps.external_user_ids.models": {
            "ExternalId": ExternalId,
            "ExternalIdType": ExternalIdType,
        },
        "openedx.core.djangoapps.content.course_overviews.api": {"get_course_overviews": get_course_overviews},
        "common.djangoapps.student.models": {
            "get_potentially_retired_user_by_username": get_potentially_retired_user_by_username
        },
    }
    for dotted, attributes in modules.items():
        parts = dotted.split(".")
        for depth in range(1, len(parts) + 1):
            name = ".".join(parts[:depth])
            sys.modules.setdefault(name, types.ModuleType(name))
        for key, value in attributes.items():
            setattr(sys.modules[dotted], key, value)


def django_settings(lms_root_url: str, database: str = ":memory:") -> dict[str, object]:
    """The Django settings the reference's models and transformers need outside the LMS (also the base of
    `reference_settings.py`, the project its management commands run in)."""
    return {
        "DEBUG": False,
        "SECRET_KEY": "oracle-only",
        "USE_TZ": True,
        "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": database}},
        "INSTALLED_APPS": [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "config_models",
            "event_routing_backends",
        ],
        "CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        "FERNET_KEYS": ["oracle-only"],
        "LMS_ROOT_URL": lms_root_url,
        "RUNNING_WITH_TEST_SETTINGS": True,
        "OPEN_EDX_FILTERS_CONFIG": {},
    }


def configure_django(lms_root_url: str) -> None:
    """An in-memory Django with the apps the reference's models need, and its default settings."""
    import django
    from django.conf import settings

    settings.configure(**django_settings(lms_root_url))
    from event_routing_backends.settings import common

    common.plugin_settings(settings)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)


def translate(registries: dict[str, type], translator: str, event: dict) -> dict:
    """One answer line for one request."""
    from eventtracking.processors.exceptions import NoTransformerImplemented

    try:
        transformer = registries[translator].get_transformer(event)
    except NoTransformerImplemented:
        return {"unsupported": True}
    try:
        result = transformer.transform()
    except Exception as exc:  # the answer records what the reference raised, whatever it is
        return {"error": f"{type(exc).__name__}: {exc}"}
    items = result if isinstance(result, list) else [result]
    if translator == "xapi":
        return {"output": [json.loads(item.to_json()) for item in items]}
    return {"output": [json.loads(json.dumps(item, default=str)) for item in items]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actor-id", required=True)
    parser.add_argument("--lms-root-url", default="http://localhost:18000")
    parser.add_argument("--course-name", default="Demonstration Course")
    args = parser.parse_args()
    stub_platform(args.actor_id, args.course_name)
    configure_django(args.lms_root_url)
    from event_routing_backends.processors.caliper.registry import CaliperTransformersRegistry
    from event_routing_backends.processors.xapi.registry import XApiTransformersRegistry

    registries = {"xapi": XApiTransformersRegistry, "caliper": CaliperTransformersRegistry}
    out = sys.stdout
    ready = {name: sorted(registry.mapping) for name, registry in registries.items()}
    out.write(json.dumps({"ready": ready}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        out.write(json.dumps(translate(registries, request["translator"], request["event"])) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
