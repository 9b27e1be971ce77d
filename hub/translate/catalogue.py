"""`rthub events`: every event name the translators know, by family, with what each becomes in xAPI
(its verbs) and Caliper (event type/action), so a grant's `event_types` can be written from it.

The names and families are `rthub_lms.catalogue` (what grants are judged against); the verbs and
actions are the translators' own tables (`xapi.VERB_OF`, `caliper.ACTION_OF`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from hub.translate import caliper, xapi
from rthub_lms.catalogue import FAMILIES, SAME_EVENT

NONE = "—"


def rows(family: str | None = None) -> list[dict[str, Any]]:
    """One row per known name, in catalogue order: name, family, xapi verbs, caliper type/actions (None:
    that translator does not map it), and the other names of the same event."""
    others = {name: [other for other in group if other != name] for group in SAME_EVENT for name in group}
    return [
        {
            "name": name,
            "family": name_family,
            "xapi": list(xapi.VERB_OF[name]) if name in xapi.BUILDERS else None,
            "caliper": list(caliper.ACTION_OF[name]) if name in caliper.BUILDERS else None,
            "same_event": others.get(name, []),
        }
        for name_family, names in FAMILIES.items()
        if family in (None, name_family)
        for name in names
    ]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", choices=tuple(FAMILIES), help="only this family")
    parser.add_argument("--json", action="store_true", help="print one JSON object, for scripts")


def run(args: argparse.Namespace) -> int:
    found = rows(args.family)
    if args.json:
        print(json.dumps({"events": found}))
        return 0
    columns = ("name", "family", "xapi", "caliper")
    table = [[_cell(row[column]) for column in columns] for row in found]
    widths = [max(len(column), *(len(line[index]) for line in table)) for index, column in enumerate(columns)]
    for line in [list(columns), *table]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    return 0


def _cell(value: str | list[str] | None) -> str:
    if value is None:
        return NONE
    return value if isinstance(value, str) else " / ".join(value)
