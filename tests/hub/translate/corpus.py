"""The shared conformance corpus (reference translator outputs), read in place, never copied."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from hub.translate import TranslationSettings
from rthub_lms.events import Event, normalise
from tests import ROOT

SETTINGS = TranslationSettings(lms_root_url="http://localhost:18000", transformer_version="rthub@0.1.0")


def corpus_dir() -> Path | None:
    configured = os.environ.get("RTHUB_CONFORMANCE_DIR")
    path = (
        Path(configured)
        if configured
        else ROOT / ".." / "shared" / "conformance"
    )
    return path if (path / "edx-events").is_dir() else None


ABSENT = "conformance corpus not found (../shared/conformance or RTHUB_CONFORMANCE_DIR)"


def require_corpus() -> Path:
    path = corpus_dir()
    if path is None:
        pytest.skip(ABSENT)
    return path


def cases(names: list[str]) -> list[Any]:
    """Parameters of a test over corpus files: the names, or, without the corpus, one case skipped
    with the reason (instead of pytest's bare "got empty parameter set")."""
    return names if corpus_dir() is not None else [pytest.param("corpus", marks=pytest.mark.skip(reason=ABSENT))]


def event_files() -> list[str]:
    path = corpus_dir()
    return sorted(p.name for p in (path / "edx-events").iterdir()) if path else []


def files_with_output(translator: str) -> list[str]:
    """Corpus events the reference translated (a user is named) for `translator`."""
    path = corpus_dir()
    if path is None:
        return []
    return sorted(p.name for p in (path / f"expected-{translator}").iterdir() if "anonymous" not in p.name)


def raw_event(name: str) -> dict[str, Any]:
    return json.loads((require_corpus() / "edx-events" / name).read_text())


def load_event(name: str) -> Event:
    return normalise(raw_event(name))


def expected(translator: str, name: str) -> Any | None:
    path = require_corpus() / f"expected-{translator}" / name
    return json.loads(path.read_text()) if path.exists() else None


def anonymised_id() -> str:
    """The reference's anonymised learner id, read from its output so no file spells it."""
    statement = json.loads((require_corpus() / "expected-xapi" / "complete_video.json").read_text())
    return statement["actor"]["account"]["name"]
