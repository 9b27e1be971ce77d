"""Django settings of the test LMS (`DJANGO_SETTINGS_MODULE=lms_settings`): a SQLite file shared by the LMS
process and the commands run beside it, users, the stand-in external_user_ids app, and rthub's backend
configured as an operator configures it (`EVENT_TRACKING_BACKENDS`)."""

import os

SECRET_KEY = "test-lms-only"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["TEST_LMS_DB"]}}
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "openedx.core.djangoapps.external_user_ids"]
EVENT_TRACKING_BACKENDS = {
    "realtime": {
        "ENGINE": "rthub_lms.backend.RealtimeBackend",
        "OPTIONS": {"redis_url": os.environ["TEST_LMS_REDIS_URL"], "redis_prefix": os.environ["TEST_LMS_PREFIX"],
                    "timeout": 2.0, "spool_path": os.environ.get("TEST_LMS_SPOOL", "")},
    },
}
