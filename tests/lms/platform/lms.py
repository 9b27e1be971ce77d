"""A small LMS for the tests: Django with users and the stand-in external_user_ids app, event-tracking
with rthub's backend from `EVENT_TRACKING_BACKENDS`.

    TEST_LMS_DB=... TEST_LMS_REDIS_URL=... TEST_LMS_PREFIX=... DJANGO_SETTINGS_MODULE=lms_settings \
        python tests/lms/platform/lms.py --users FIRST-LAST

creates the database (users FIRST..LAST, types xapi and caliper) when it is new, prints `ready`, then emits one
event per stdin line (JSON: name, data, context) and answers each with `sent`.
"""

from __future__ import annotations

import argparse
import json
import sys

import django
from django.conf import settings
from django.core.management import call_command


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", default="1-0", help="user ids FIRST-LAST")
    args = parser.parse_args()
    django.setup()
    call_command("migrate", run_syncdb=True, verbosity=0)
    from django.contrib.auth.models import User
    from eventtracking.tracker import Tracker
    from openedx.core.djangoapps.external_user_ids.models import ExternalIdType

    from rthub_lms.backend import RealtimeBackend

    for name in (ExternalIdType.XAPI, ExternalIdType.CALIPER):
        ExternalIdType.objects.get_or_create(name=name)
    first, _, last = args.users.partition("-")
    for number in range(int(first), int(last) + 1):
        User.objects.get_or_create(id=number, defaults={"username": f"learner{number}"})
    backend = RealtimeBackend(**settings.EVENT_TRACKING_BACKENDS["realtime"]["OPTIONS"])
    tracker = Tracker(backends={"realtime": backend})
    print("ready", flush=True)
    for line in sys.stdin:
        event = json.loads(line)
        with tracker.context("test", event["context"]):
            tracker.emit(event["name"], event["data"])
        print("sent", flush=True)
    backend.close()


if __name__ == "__main__":
    main()
