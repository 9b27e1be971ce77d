"""The soak's report: faults by kind, what was published, one line per consumer, delays after faults."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.soak.checker import Row
from bench.soak.run import Collected

COLUMNS = ("consumer", "kind", "required", "delivered", "dead-lettered", "gap", "lost", "duplicates",
           "unauthorized", "early", "unfiltered", "order", "mismatched")


def silent_losses(result: dict[str, Any]) -> int:
    return sum(row.lost for row in result["rows"]) + result["lms_lost"]


def unauthorized(result: dict[str, Any]) -> int:
    return sum(row.unauthorized for row in result["rows"]) + len(result["token_leaks"])


def render(run: Collected, result: dict[str, Any]) -> str:
    config = run.config
    lines = [f"## Soak: seed {config.seed}, {config.minutes:g} min, {config.rate:g} events/s"
             f"{', LRS' if config.lrs else ''}", ""]
    kinds = Counter(fault.kind for fault in run.faults if fault.ended)
    lines += ["| fault | count |", "|---|---|"] + [f"| {kind} | {count} |" for kind, count in sorted(kinds.items())]
    lines += [f"- {fault.kind} {fault.target}: {fault.note}" for fault in run.faults if fault.note]
    counts: Counter[str] = Counter()
    for item in run.lms_counts:
        counts.update(item)
    lines += ["", f"LMS: {result['sent']} events sent ({result['sent_hidden']} for the course no grant names); "
              f"stream: {result['published']} entries ({result['hidden_in_stream']} of that course, "
              f"{result['stream_duplicates']} LMS events twice); sent but not in the stream (LMS loss): "
              f"{result['lms_lost']}; plug-in counts of the processes that exited cleanly: "
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v), ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    rows: list[Row] = result["rows"]
    changes = [f"- {name}: {c.what} between {c.before} and {c.after}" for name, state in run.clients.items()
               for c in state.changes]
    for row in rows:
        cells = (row.consumer, row.kind, row.required, row.delivered, row.dead_lettered, row.gap, row.lost,
                 row.duplicates, row.unauthorized, row.early, row.unfiltered, row.order_violations, row.mismatched)
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    if not run.settled:
        lines += ["", "**The run did not settle within the time allowed: what was still on its way counts as lost.**"]
    peak, limit = run.open_files
    lines += ["", f"Open files in the harness process: at most {peak} (limit {limit})."]
    lines += ["", f"**silent losses: {silent_losses(result)}; unauthorized: {unauthorized(result)}** "
              f"(bad webhook signatures: {sum(row.bad_signatures for row in rows)}; request bodies cut short by a "
              f"reset: {sum(row.torn for row in rows)}; dead credentials refused: "
              f"{len(result['token_checks'])}; dead credentials that worked: {len(result['token_leaks'])})"]
    for row in rows:
        for example in row.lost_examples:
            lines.append(f"- lost by {row.consumer}: {example}")
        for example in row.unauthorized_examples:
            lines.append(f"- unauthorized at {row.consumer}: {example}")
        for example in row.early_examples:
            lines.append(f"- early at {row.consumer}: {example}")
    lines += [f"- {leak}" for leak in result["token_leaks"]]
    lines += ["", "<details><summary>entitlement changes</summary>", "", *changes, "", "</details>"]
    delays = [d for d in result["delays"] if d["delay"] is not None]
    by_kind: dict[str, float] = {}
    for item in delays:
        by_kind[item["kind"]] = max(by_kind.get(item["kind"], 0.0), item["delay"])
    lines += ["", "Longest delivery delay after a fault ended (events published during it or in the 5 s "
              "before, any consumer):", "", "| fault | longest delay (s) |", "|---|---|"]
    lines += [f"| {kind} | {delay:.1f} |" for kind, delay in sorted(by_kind.items())]
    return "\n".join(lines) + "\n"
