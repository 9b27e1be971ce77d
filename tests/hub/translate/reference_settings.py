"""Django settings for running the reference's management commands (`transform_tracking_logs`) in its venv.

Never imported by rthub: the reference's interpreter loads it as `DJANGO_SETTINGS_MODULE=reference_settings`
with this folder on its path, so it shares `oracle_runner.py`'s edx-platform stubs and base settings.
The environment names the project: `REFERENCE_DATABASE` (its sqlite file), `REFERENCE_LMS_ROOT_URL`,
`REFERENCE_ACTOR_ID` (every learner's external id, as in the oracle) and `REFERENCE_COURSE_NAME`.
The xAPI backend is on, Caliper off (the reference's defaults), and Celery runs tasks in the calling
process, so a statement is in the LRS when the command exits (a deployment's worker would send it later).
"""

from __future__ import annotations

import os
import sys

from celery import Celery
from event_routing_backends.settings import common
from oracle_runner import django_settings, stub_platform

stub_platform(os.environ["REFERENCE_ACTOR_ID"],
              os.environ.get("REFERENCE_COURSE_NAME", "Demonstration Course"))
_base = django_settings(os.environ.get("REFERENCE_LMS_ROOT_URL", "http://localhost:18000"),
                        os.environ["REFERENCE_DATABASE"])
globals().update(_base)
RUNNING_WITH_TEST_SETTINGS = False  # the reference's own version in statements, as deployed
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"  # what the reference's migrations created
# The reference's tasks, and the tracker the command sends through
INSTALLED_APPS = [*_base["INSTALLED_APPS"], "celery_utils", "eventtracking.django"]
EVENT_TRACKING_ENABLED = True  # the app registers that tracker only then (as in the LMS)

CELERY = Celery("reference")
CELERY.conf.update(task_always_eager=True, task_eager_propagates=True)
CELERY.set_default()

_settings = sys.modules[__name__]
common.plugin_settings(_settings)
# The LMS's MySQL compares `RouterConfiguration.backend_name` case-insensitively, sqlite does not: the xAPI
# router looks its rows up under the model's own spelling, which the router then needs to pick the LRS client.
_xapi = _settings.EVENT_TRACKING_BACKENDS["event_transformer"]["OPTIONS"]["backends"]["xapi"]
_xapi["OPTIONS"]["backend_name"] = "xAPI"
