"""Every visible reference output matches rthub's, field by field, modulo the documented deviations."""

from __future__ import annotations

import pytest
from ralph.models.xapi.base.statements import BaseXapiStatement

from hub.translate import TranslationError, supports, translate
from tests.hub.translate import reference, spec
from tests.hub.translate.corpus import (
    SETTINGS,
    anonymised_id,
    cases,
    event_files,
    expected,
    files_with_output,
    load_event,
    raw_event,
    require_corpus,
)

ANONYMOUS = [name for name in event_files() if "anonymous" in name]


def test_corpus_is_present() -> None:
    """Reports the corpus as skipped, with the reason, when it is absent (as do the tests over its files)."""
    assert (require_corpus() / "expected-xapi").is_dir()


@pytest.mark.parametrize("name", cases(files_with_output("xapi")))
def test_xapi_matches_reference(name: str) -> None:
    reference_output = expected("xapi", name)
    ours = translate(load_event(name), "xapi", actor_id=anonymised_id(), settings=SETTINGS)
    wanted = reference_output if isinstance(reference_output, list) else [reference_output]
    wanted = reference.as_live_event(raw_event(name), wanted)
    assert len(ours) == len(wanted)
    for index, (mine, theirs) in enumerate(zip(ours, wanted, strict=True)):
        adjusted = reference.with_ids_of(mine, reference.xapi(theirs, SETTINGS.transformer_version))
        assert mine == adjusted, f"statement {index}"


@pytest.mark.parametrize("name", cases(files_with_output("caliper")))
def test_caliper_matches_reference(name: str) -> None:
    reference_output = expected("caliper", name)
    (ours,) = translate(load_event(name), "caliper", actor_id=anonymised_id(), settings=SETTINGS)
    assert reference.ours_caliper(ours) == reference.caliper(reference_output, SETTINGS.transformer_version)


@pytest.mark.parametrize("translator", ["xapi", "caliper"])
@pytest.mark.parametrize("name", cases(ANONYMOUS))
def test_event_without_user_is_rejected(name: str, translator: str) -> None:
    with pytest.raises(TranslationError, match="names no user"):
        translate(load_event(name), translator, actor_id=anonymised_id(), settings=SETTINGS)


@pytest.mark.parametrize("name", cases([name for name in event_files() if "anonymous" not in name]))
def test_every_named_corpus_event_gives_valid_output(name: str) -> None:
    """Including those the reference left without output, and where the reference's own is invalid."""
    event = load_event(name)
    statements = translate(event, "xapi", actor_id=anonymised_id(), settings=SETTINGS)
    for statement in statements:
        BaseXapiStatement(**statement)
    if supports("caliper", event["name"]):
        (caliper_event,) = translate(event, "caliper", actor_id=anonymised_id(), settings=SETTINGS)
        assert spec.problems(caliper_event) == []
