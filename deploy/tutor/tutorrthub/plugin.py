"""Tutor plugin for rthub: the hub service, the LMS plug-in and its settings, a Caddy site, an init task.

The hub's key files live in Tutor's data directory (`data/rthub`, mounted as `RTHUB_DATA_DIR` in the hub
and in every job or `tutor local run rthub …` container), so commands and hubs use the same keys.

Layout as in Tutor's own plugins: configuration here, one file per patch under `patches/`, files to
render under `templates/rthub/` (`build/` is rendered into the Tutor environment,
`tasks/` are init scripts, `partials/` are included by patches).
"""

from __future__ import annotations

import os
from glob import glob
from importlib.resources import files

from tutor import hooks

from .__about__ import __version__

TEMPLATES = files("tutorrthub") / "templates"
PATCHES = files("tutorrthub") / "patches"

DEFAULTS: dict[str, object] = {
    "VERSION": __version__,
    # The hub image: `rthub serve` from the rthub distribution (`tutor images build rthub`).
    "DOCKER_IMAGE": "{{ DOCKER_REGISTRY }}rthub/rthub:{{ RTHUB_VERSION }}",
    "PIP_REQUIREMENT": "rthub=={{ RTHUB_VERSION }}",
    # The LMS-side event-tracking backend, installed into the Open edX image.
    "LMS_PIP_REQUIREMENT": "rthub-lms=={{ RTHUB_VERSION }}",
    "HOST": "realtime.{{ LMS_HOST }}",
    # Tutor's Redis, database 0 (Django's cache is database 1, which `cache.clear()` flushes).
    "REDIS_URL": (
        "redis://{% if REDIS_USERNAME and REDIS_PASSWORD %}{{ REDIS_USERNAME }}:{{ REDIS_PASSWORD }}@{% endif %}"
        "{{ REDIS_HOST }}:{{ REDIS_PORT }}/0"
    ),
    "REDIS_PREFIX": "rthub:",
    # Tutor's Redis is capped at 4 GB for everyone: keep 100,000 events for resume, not rthub's million.
    "STREAM_MAXLEN": 100_000,
    "WORKERS": 1,
    "WEBHOOK_ALLOW_PRIVATE": False,
    "ADMIN_CLIENT_NAME": "tutor-admin",
}

hooks.Filters.CONFIG_DEFAULTS.add_items([(f"RTHUB_{key}", value) for key, value in DEFAULTS.items()])

hooks.Filters.CLI_DO_INIT_TASKS.add_item(("rthub", (TEMPLATES / "rthub" / "tasks" / "rthub" / "init").read_text()))

hooks.Filters.IMAGES_BUILD.add_item(
    ("rthub", ("plugins", "rthub", "build", "rthub"), "{{ RTHUB_DOCKER_IMAGE }}", ())
)
hooks.Filters.IMAGES_PULL.add_item(("rthub", "{{ RTHUB_DOCKER_IMAGE }}"))
hooks.Filters.IMAGES_PUSH.add_item(("rthub", "{{ RTHUB_DOCKER_IMAGE }}"))


@hooks.Filters.APP_PUBLIC_HOSTS.add()
def _rthub_host(hosts: list[str], context_name: str) -> list[str]:
    return [*hosts, "{{ RTHUB_HOST }}"] if context_name == "local" else hosts


hooks.Filters.ENV_TEMPLATE_ROOTS.add_item(str(TEMPLATES))
hooks.Filters.ENV_TEMPLATE_TARGETS.add_items([("rthub/build", "plugins")])
for path in glob(str(PATCHES / "*")):
    with open(path, encoding="utf-8") as patch_file:
        hooks.Filters.ENV_PATCHES.add_item((os.path.basename(path), patch_file.read()))
