"""Tutor plugin for rthub: the hub (compose service or Kubernetes Deployment), the LMS plug-in and its
settings, a Caddy site, an init task, and the wiring into Aspects' Ralph LRS.

Key files: under `tutor local` they live in Tutor's data directory (`data/rthub`, mounted as
`RTHUB_DATA_DIR` in the hub and in every job or `tutor local run rthub …` container), where the hub
makes them on its first start and `rthub admin rotate-signing-key` can replace them. Under
`tutor k8s` no volume is shared by every pod, so the keys come from `config.yml` (`RTHUB_SIGNING_KEY`,
`RTHUB_ENDPOINT_KEY`, generated once by `tutor config save`) through the Secret `rthub-keys`.

Layout as in Tutor's own plugins: configuration here, one file per patch under `patches/`, files to
render under `templates/rthub/` (`build/` and `k8s/` are rendered into the Tutor environment,
`tasks/` are init scripts, `partials/` are included by patches).
"""

from __future__ import annotations

import base64
import os
import secrets
from glob import glob
from importlib.resources import files
from typing import Any

import jinja2
import yaml
from Crypto.PublicKey import ECC
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
    # Kubernetes: hub pods, and each pod's container resources (a `resources` object as Kubernetes reads it).
    "REPLICAS": 1,
    "RESOURCES": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    "WEBHOOK_ALLOW_PRIVATE": False,
    # Comma-separated host names that may resolve to private addresses (Aspects' `ralph` is added by itself).
    "WEBHOOK_PRIVATE_HOSTS": "",
    "ADMIN_CLIENT_NAME": "tutor-admin",
    # "auto": send every event to Aspects' Ralph when the aspects plugin is enabled and Aspects reads
    # xAPI from Ralph (`ASPECTS_XAPI_SOURCE` other than "vector"); true / false force it.
    "ASPECTS": "auto",
    "ASPECTS_CLIENT_NAME": "aspects-ralph",
    "ASPECTS_BATCH_SIZE": 100,
}

UNIQUE: dict[str, str] = {
    # Generated once by `tutor config save`, kept in config.yml: every pod of `tutor k8s` reads them
    # from the Secret rthub-keys (`tutor local` keeps its keys in data/rthub instead).
    "SIGNING_KEY": "{{ 'P-256'|rthub_ec_private_key }}",
    "ENDPOINT_KEY": "{{ 32|rthub_fernet_key }}",
}


def ec_private_key(curve: str) -> str:
    """A fresh PEM (PKCS#8) EC private key: the hub signs ES256 tokens, and Tutor only makes RSA keys."""
    return ECC.generate(curve=curve).export_key(format="PEM")


def fernet_key(size: int) -> str:
    """A fresh Fernet key (url-safe base64 of `size` random bytes), as the hub's `endpoint.key` holds."""
    return base64.urlsafe_b64encode(secrets.token_bytes(size)).decode()


def k8s_env(rendered: str) -> str:
    """The compose environment (a YAML mapping, `partials/environment.yml`) as a Kubernetes `env` list,
    so both deployments read one list of variables."""
    mapping = yaml.safe_load(rendered) or {}
    return yaml.safe_dump([{"name": k, "value": str(v)} for k, v in mapping.items()], sort_keys=False).rstrip()


@jinja2.pass_context
def aspects_wiring(context: Any) -> bool:
    """Whether the Aspects client is created and the reference's xAPI routing turned off (`RTHUB_ASPECTS`).

    Never without the aspects plugin (its `RALPH_*` settings are needed). "auto" only where Aspects reads
    xAPI from Ralph: with its default Vector source it reads the statements event-routing-backends
    writes into the LMS's logs, which rthub does not write, so turning that routing off would starve it.
    """
    if "aspects" not in context.get("PLUGINS", []):
        return False
    setting = context.get("RTHUB_ASPECTS")
    if setting == "auto":
        return context.get("ASPECTS_XAPI_SOURCE", "vector") != "vector"
    return setting is True or str(setting).lower() == "true"


hooks.Filters.ENV_TEMPLATE_FILTERS.add_items([
    ("rthub_ec_private_key", ec_private_key),
    ("rthub_fernet_key", fernet_key),
    ("rthub_k8s_env", k8s_env),
])
hooks.Filters.ENV_TEMPLATE_VARIABLES.add_item(("rthub_aspects", aspects_wiring))
hooks.Filters.CONFIG_DEFAULTS.add_items([(f"RTHUB_{key}", value) for key, value in DEFAULTS.items()])
hooks.Filters.CONFIG_UNIQUE.add_items([(f"RTHUB_{key}", value) for key, value in UNIQUE.items()])

hooks.Filters.CLI_DO_INIT_TASKS.add_item(("rthub", (TEMPLATES / "rthub" / "tasks" / "rthub" / "init").read_text()))
# After the hub's: the LMS mirrors its learners' external ids for the aspects-ralph client it created.
hooks.Filters.CLI_DO_INIT_TASKS.add_item(("lms", (TEMPLATES / "rthub" / "tasks" / "lms" / "init").read_text()))

hooks.Filters.IMAGES_BUILD.add_item(
    ("rthub", ("plugins", "rthub", "build", "rthub"), "{{ RTHUB_DOCKER_IMAGE }}", ())
)
hooks.Filters.IMAGES_PULL.add_item(("rthub", "{{ RTHUB_DOCKER_IMAGE }}"))
hooks.Filters.IMAGES_PUSH.add_item(("rthub", "{{ RTHUB_DOCKER_IMAGE }}"))


@hooks.Filters.IMAGES_BUILD_REQUIRED.add()
def _images_to_build(images: list[str], context_name: str) -> list[str]:
    """`tutor local launch` builds the hub image and the Open edX image with rthub-lms (Tutor's own
    launch builds none in local; in dev it builds openedx-dev, which carries rthub-lms too)."""
    return [*images, "rthub", "openedx"] if context_name == "local" else [*images, "rthub"]


@hooks.Filters.APP_PUBLIC_HOSTS.add()
def _rthub_host(hosts: list[str], context_name: str) -> list[str]:
    return [*hosts, "{{ RTHUB_HOST }}"] if context_name == "local" else hosts


hooks.Filters.ENV_TEMPLATE_ROOTS.add_item(str(TEMPLATES))
hooks.Filters.ENV_TEMPLATE_TARGETS.add_items([
    ("rthub/build", "plugins"),
    ("rthub/k8s", "plugins"),
    ("rthub-wheels", "build/openedx"),
])
for path in glob(str(PATCHES / "*")):
    with open(path, encoding="utf-8") as patch_file:
        hooks.Filters.ENV_PATCHES.add_item((os.path.basename(path), patch_file.read()))
