"""End-to-end benchmark: LMS publisher -> Redis -> hub -> WebSocket subscribers, against a bare loop.

    python -m bench.e2e                        # default: bare loop and hub (1 worker), 4 rates, < 5 min
    python -m bench.e2e --workers 1 2 4        # the same rates for each worker count
    python -m bench.e2e --rates 1000 --duration 20 --repeat 2
    python -m bench.e2e --ramp                 # max sustainable rate: bare loop, hub with 1, 2, 4 workers
    python -m bench.e2e --idle 10000           # 10,000 idle authenticated sockets on one hub process
    python -m bench.e2e --profile              # py-spy both targets during their 1,000 events/s round

Starts its own redis-server, the targets (`python -m bench.bare_loop`, `rthub serve --workers N`),
M subscribers spread over several processes (subscriber i sees course i % 10, so 10 % of the
events: on the hub as a real OAuth client whose grant is that course, on the bare loop by filter),
and publishes through `RealtimeBackend` at fixed rates. The target gets cores of its own
(`--target-cores`, half of them by default), the harness, Redis and the subscribers the rest, as a
server and its clients would be on separate machines. Latency is publish call -> frame received,
from the publisher's cursor -> send-time table joined with the subscribers' receive times. Writes
`results/e2e-<time>.json` and `.png` and prints a table in which every hub figure is also given as
a ratio to the bare loop measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

import hub
from bench import harness, profile
from bench.cpuquota import CpuQuota, QuotaUnavailable
from bench.plot import latency_plot
from bench.subscribers import SubscriberPool, raise_file_limit
from hub.dev.embedded import EmbeddedRedis, free_port
from rthub_lms.backend import RealtimeBackend

RAMP_START, RAMP_STEP, RAMP_MIN, RAMP_MAX = 500.0, 1.5, 50.0, 8000.0
RAMP_RESOLUTION = 1.06  # the ramp stops when held and failed rates are within 6 %
P99_LIMIT_MS = 100.0
PROFILE_RATE = 1000.0
# A round whose publisher sent less than this share of the asked rate measured the harness, not the target.
PUBLISHER_BOUND = 0.95
GOAL_RATE = 1500.0  # 15,000 frames/s with 100 subscribers entitled to 10 % each


@dataclass
class Setup:
    """A running target with its own subscribers, publisher and key prefix."""

    target: harness.Target
    pool: SubscriberPool
    backend: RealtimeBackend
    ignore: set[str]
    per_connection_kb: float


def prepare(stack: ExitStack, target: harness.Target, redis_url: str, args: argparse.Namespace) -> Setup:
    """Start `target`, connect its subscribers (RSS per connection from before/after) and warm it up."""
    stack.enter_context(target)
    time.sleep(0.5)
    rss_empty = target.rss()
    subscribers = [target.subscriber(index) for index in range(args.subscribers)]
    pool = stack.enter_context(SubscriberPool(target.url, subscribers, args.client_processes))
    time.sleep(0.3)
    per_connection = (target.rss() - rss_empty) / args.subscribers / 1024
    # The LMS-side preemptive filter needs the registry's grants, which only the hub's prefix has.
    backend = RealtimeBackend(redis_url=redis_url, redis_prefix=target.prefix, timeout=2.0, preemptive=target.oauth)
    stack.callback(backend.close)
    ignore = harness.warm_up(pool, backend, args.subscribers)
    return Setup(target, pool, backend, ignore, per_connection)


class FixedRates:
    """Every rate in order, whatever each round shows."""

    def __init__(self, rates: list[float]) -> None:
        self._rates = list(rates)

    def next_rate(self) -> float | None:
        return self._rates.pop(0) if self._rates else None

    def record(self, held: bool) -> None:
        pass


class RateSearch:
    """The ramp's search for one target's sustainable maximum: up by RAMP_STEP from RAMP_START until a
    round fails (down by it, to RAMP_MIN, while none has held), then halve the bracket (geometrically)
    until the highest rate held and the lowest that failed are within RAMP_RESOLUTION of each other."""

    def __init__(self) -> None:
        self._rate: float | None = RAMP_START
        self.held: float | None = None
        self.failed: float | None = None

    def next_rate(self) -> float | None:
        return self._rate

    def record(self, held: bool) -> None:
        assert self._rate is not None
        if held:
            self.held = self._rate
        else:
            self.failed = self._rate
        if self.failed is None:
            self._rate = round(self._rate * RAMP_STEP, -1) if self._rate < RAMP_MAX else None
        elif self.held is None:
            self._rate = round(self._rate / RAMP_STEP, -1) if self._rate > RAMP_MIN else None
        else:
            middle = round((self.held * self.failed) ** 0.5, -1)
            close = self.failed / self.held <= RAMP_RESOLUTION or not self.held < middle < self.failed
            self._rate = None if close else middle


def measure(targets: list[harness.Target], redis_url: str, args: argparse.Namespace,
            schedule: Callable[[], FixedRates | RateSearch], profiles: dict[str, Path]) -> list[dict[str, Any]]:
    """Run each target's rounds at the rates its schedule gives, all targets up at once, each on its
    own key prefix.

    Rounds alternate between targets, so the background load of a shared machine falls on them
    alike (with fixed rates, each rate's rounds are also close in time).
    """
    rows: list[dict[str, Any]] = []
    events: dict[float, list[dict[str, Any]]] = {}
    with ExitStack() as stack:
        setups = [prepare(stack, target, redis_url, args) for target in targets]
        plans = [schedule() for _ in setups]
        while True:
            ran = False
            for setup, plan in zip(setups, plans, strict=True):
                rate = plan.next_rate()
                if rate is None:
                    continue
                ran = True
                if rate not in events:
                    events[rate] = harness.make_events(int(rate * args.duration), seed=int(rate))
                recorder = None
                if setup.target.name in profiles and rate == PROFILE_RATE:
                    recorder = profile.start_recording(
                        setup.target.pids()[-1], args.duration, profiles[setup.target.name])
                row = harness.run_round(setup.target, setup.pool, setup.backend, events[rate], rate,
                                        args.subscribers, setup.ignore)
                if recorder is not None:
                    recorder.wait(30)
                row["rss_per_connection_kb"] = setup.per_connection_kb
                row["connect_seconds"] = setup.pool.open_seconds
                rows.append(row)
                print(progress_line(row), flush=True)
                plan.record(harness.sustainable(row, P99_LIMIT_MS))
                time.sleep(0.5)
            if not ran:
                return rows


def progress_line(row: dict[str, Any]) -> str:
    verdict = "ok" if harness.sustainable(row, P99_LIMIT_MS) else "FAIL"
    return (f"  {row['target']:<10} {row['rate']:>6g} ev/s  {row['frames_per_s']:>8.0f} frames/s  "
            f"p50 {row['p50_ms']:.2f}  p99 {row['p99_ms']:.2f}  max {row['max_ms']:.1f} ms  "
            f"lost {row['lost']}  dup {row['duplicated']}  closed {row['closed']}  "
            f"cpu {row['cpu_percent']:.0f}%{_roles(row)} (subscribers {row['subscribers_cpu_percent']:.0f}%, "
            f"machine {row['machine_cpu_percent']:.0f}% of {os.cpu_count()})  {verdict}"
            + ("" if not row["publish_failed"] else f"  publish: {row['publish_outcomes']}"))


def _roles(row: dict[str, Any]) -> str:
    roles = row.get("cpu_percent_by_role") or {}
    if len(roles) < 2:
        return ""
    return " [" + ", ".join(f"{role} {share:.0f}%" for role, share in sorted(roles.items())) + "]"


COLUMNS = (("rate", "ev/s", "{:g}"), ("frames_per_s", "frames/s", "{:.0f}"), ("p50_ms", "p50 ms", "{:.2f}"),
           ("p90_ms", "p90 ms", "{:.2f}"), ("p99_ms", "p99 ms", "{:.2f}"), ("max_ms", "max ms", "{:.1f}"),
           ("lost", "lost", "{}"), ("duplicated", "dup", "{}"), ("cpu_percent", "CPU %", "{:.0f}"),
           ("cpu_us_per_frame", "CPU µs/frame", "{:.1f}"),
           ("rss_mb", "RSS MB", "{:.1f}"), ("rss_per_connection_kb", "KB/conn", "{:.1f}"))
RATIO_KEYS = ("p50_ms", "p90_ms", "p99_ms", "max_ms", "cpu_percent", "cpu_us_per_frame", "rss_mb",
              "rss_per_connection_kb")


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table; hub rows are followed by their ratio to the bare loop at the same rate and repeat."""
    header = "| target | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 1)]
    bare = {(row["rate"], row.get("repeat", 0)): row for row in rows if row["target"] == "bare loop"}
    for row in rows:
        cells = [fmt.format(row[key]) for key, _, fmt in COLUMNS]
        lines.append(f"| {row['target']} | " + " | ".join(cells) + " |")
        base = bare.get((row["rate"], row.get("repeat", 0)))
        if row["target"] != "bare loop" and base is not None:
            ratios = [f"{row[key] / base[key]:.2f}x" if key in RATIO_KEYS and base[key] else ""
                      for key, _, _ in COLUMNS]
            lines.append("| ↳ ratio to bare | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def ramp_table(rows: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Per repeat, each target's highest rate that held (`RateSearch`)."""
    best: dict[tuple[int, str], dict[str, Any] | None] = {}
    for row in rows:
        key = (row["repeat"], row["target"])
        best.setdefault(key, None)
        held = best[key]
        if harness.sustainable(row, P99_LIMIT_MS) and (held is None or row["rate"] > held["rate"]):
            best[key] = row
    lines = ["| repeat | target | max sustainable ev/s | published ev/s | frames/s | p99 ms there | ratio to bare |",
             "|---|---|---|---|---|---|---|"]
    summary = []
    for (repeat, target), row in sorted(best.items()):
        bare = best.get((repeat, "bare loop"))
        if row is None:
            lines.append(f"| {repeat + 1} | {target} | none | | | | |")
            summary.append({"repeat": repeat, "target": target, "rate": None})
            continue
        ratio = row["frames_per_s"] / bare["frames_per_s"] if bare else None
        shown = f"{ratio:.2f}x" if ratio is not None else "(no bare loop)"
        lines.append(f"| {repeat + 1} | {target} | {row['rate']:g} | {row['publish_rate']:.0f} | "
                     f"{row['frames_per_s']:.0f} | {row['p99_ms']:.1f} | {shown} |")
        summary.append({"repeat": repeat, "target": target, "rate": row["rate"], "publish_rate": row["publish_rate"],
                        "frames_per_s": row["frames_per_s"], "cpu_us_per_frame": row["cpu_us_per_frame"],
                        "ratio_to_bare": ratio})
    return "\n".join(lines), summary


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def goals(rows: list[dict[str, Any]], ramp: list[dict[str, Any]] | None) -> list[str]:
    """The issue-17 targets as same-run ratios: p99 against the bare loop at GOAL_RATE, the ramp's
    sustainable maximum against the bare loop's, and each worker count against one worker."""
    lines = []
    bare = {(row["rate"], row.get("repeat", 0)): row for row in rows if row["target"] == "bare loop"}
    for target in sorted({row["target"] for row in rows if row["target"] != "bare loop"}):
        pairs = [(row, bare.get((row["rate"], row.get("repeat", 0)))) for row in rows
                 if row["target"] == target and row["rate"] == GOAL_RATE]
        ratios = [row["p99_ms"] / base["p99_ms"] for row, base in pairs if base is not None]
        if ratios:
            lines.append(f"goal: {target} p99 at {GOAL_RATE:g} ev/s / bare loop's = {_median(ratios):.2f}x "
                         f"(median of {len(ratios)}; target <= 2.00x)")
        cpu = [row["cpu_us_per_frame"] for row in rows if row["target"] == target and row["rate"] == GOAL_RATE]
        bare_cpu = [row["cpu_us_per_frame"] for row in bare.values() if row["rate"] == GOAL_RATE]
        if cpu and bare_cpu:
            lines.append(f"      {target} CPU µs/frame at {GOAL_RATE:g} ev/s {_median(cpu):.1f} "
                         f"vs bare loop {_median(bare_cpu):.1f} ({_median(cpu) / _median(bare_cpu):.2f}x)")
    for repeat in sorted({item["repeat"] for item in ramp or []}):
        best = {item["target"]: item for item in ramp or [] if item["repeat"] == repeat}
        base, one = best.get("bare loop"), best.get("hub x1")
        if base and one and base["rate"] and one["rate"]:
            ratio = one["frames_per_s"] / base["frames_per_s"]
            line = f"goal: max sustainable, hub x1 / bare loop = {ratio:.2f}x (repeat {repeat + 1}; target >= 0.80x)"
            if base["publish_rate"] < PUBLISHER_BOUND * base["rate"]:
                line += (f"; an upper bound only: the publisher sent {base['publish_rate']:.0f} ev/s of the "
                         f"{base['rate']:g} asked, so the bare loop's own limit was not reached; by CPU per "
                         f"frame there ({one['cpu_us_per_frame']:.1f} vs {base['cpu_us_per_frame']:.1f} µs) a core "
                         f"would carry ~{base['cpu_us_per_frame'] / one['cpu_us_per_frame']:.2f}x")
            lines.append(line)
        for target, item in sorted(best.items()):
            if target.startswith("hub x") and target != "hub x1" and one and one["rate"] and item["rate"]:
                lines.append(f"      {target} / hub x1 = {item['frames_per_s'] / one['frames_per_s']:.2f}x "
                             f"(repeat {repeat + 1}; should not shrink below 1.00x)")
    return lines


def idle(redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Open `args.idle` authenticated sockets to one hub process and read its RSS before and after."""
    target = harness.hub_target(redis_url, free_port(), 1)
    with target:
        time.sleep(1.0)
        rss_empty = target.rss()
        started = time.perf_counter()
        subscribers = [(target.tokens[index % len(target.tokens)], None) for index in range(args.idle)]
        with SubscriberPool(target.url, subscribers, args.idle_processes) as pool:
            opened = time.perf_counter() - started
            time.sleep(2.0)
            rss_full = target.rss()
            collected = pool.collect()
        result = {
            "connections": args.idle,
            "client_processes": args.idle_processes,
            "open_seconds": opened,
            "connections_per_s": args.idle / opened,
            "rss_empty_mb": rss_empty / 2**20,
            "rss_full_mb": rss_full / 2**20,
            "rss_per_connection_kb": (rss_full - rss_empty) / args.idle / 1024,
            "closed_while_idle": len(collected.closes),
        }
    return result


def code_under_test() -> tuple[str, str]:
    """Where the targets' `hub` package comes from, and its commit (`+` when its tree has changes).

    The targets start as `python -m hub.cli` from this directory with this environment, so they
    import `hub` from where this process does: `python -m` puts the working directory first on
    `sys.path`, ahead of PYTHONPATH. An A/B run of two checkouts must start each from its own."""
    source = Path(hub.__file__).resolve().parent
    git = ["git", "-C", str(source)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    changed = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True).stdout.strip()
    return str(source), commit + ("+" if changed else "")


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    source, commit = code_under_test()
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "hub_source": source,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.platform(),
        "args": {key: str(value) for key, value in vars(args).items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--rates", type=float, nargs="+", default=[500, 1000, 1500, 2000],
                        help="published events/s, one round each (default: 500 1000 1500 2000)")
    parser.add_argument("--duration", type=float, help="seconds per round (default 8; 6 with --ramp)")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+",
                        help="hub worker counts to measure (default: 1; 1 2 4 with --ramp)")
    parser.add_argument("--repeat", type=int, default=1, help="run every target this many times")
    parser.add_argument("--ramp", action="store_true",
                        help=f"raise the rate until p99 > {P99_LIMIT_MS:g} ms or loss; hub with 1, 2, 4 workers")
    parser.add_argument("--idle", type=int, metavar="N", help="idle mode: N sockets to one hub process")
    parser.add_argument("--idle-processes", type=int, default=4)
    parser.add_argument("--profile", action="store_true", help="py-spy bare loop and hub x1 at 1,000 ev/s")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare loop (no ratios)")
    parser.add_argument("--target-cores", type=int, default=len(os.sched_getaffinity(0)) // 2,
                        help="cores of its own for the target, the rest for the harness, Redis and the "
                             "subscribers (default: half of them; 0: everything shares every core)")
    parser.add_argument("--target-share", type=float, metavar="CORES",
                        help="a CPU budget per worker, in cores (e.g. 0.2: the bare loop and hub x1 get 0.2, "
                             "hub x4 0.8 for its workers and render stage together), so the ramp finds each "
                             "target's limit below the publisher's (needs root)")
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args()
    if args.duration is None:
        args.duration = 6.0 if args.ramp else 8.0
    raise_file_limit()
    cores = harness.isolate(args.target_cores)
    workers = args.workers or ([1, 2, 4] if args.ramp else [1])
    if args.target_share is not None:
        room = len(cores.target) if cores else os.cpu_count() or 1
        if args.target_share * max(workers) > room:
            parser.error(f"--target-share {args.target_share:g} x {max(workers)} workers is more than the "
                         f"{room} core(s) the target runs on")
        try:
            CpuQuota("probe", args.target_share).remove()
        except (QuotaUnavailable, ValueError) as exc:
            parser.error(f"--target-share: {exc}")
    placement = cores.describe() if cores else "shared by the target and the harness"
    if args.target_share is not None:
        placement += f"; each target's process tree limited to {args.target_share:g} of a core per worker"
    print(f"cores: {placement}", flush=True)
    report: dict[str, Any] = {"meta": metadata(args)}
    report["meta"]["cores"] = placement
    print(f"code: hub from {report['meta']['hub_source']} at {report['meta']['commit']}", flush=True)
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    started = time.perf_counter()
    with EmbeddedRedis() as redis:
        if args.idle:
            report["idle"] = idle(redis.url, args)
            print(orjson.dumps(report["idle"], option=orjson.OPT_INDENT_2).decode())
        else:
            schedule = RateSearch if args.ramp else (lambda: FixedRates(args.rates))
            rows: list[dict[str, Any]] = []
            profiles: dict[str, Path] = {}
            for repeat in range(args.repeat):
                targets = [] if args.no_bare else [harness.bare_target(redis.url, free_port())]
                targets += [harness.hub_target(redis.url, free_port(), count) for count in workers]
                for target in targets:
                    target.cores = cores.target if cores else None
                    target.cpu_share = None if args.target_share is None else args.target_share * target.workers
                if repeat % 2:
                    targets.reverse()
                profiling = {}
                if args.profile and repeat == 0:
                    profiling = {name: args.results / f"profile-{stamp}-{name.replace(' ', '-')}.txt"
                                 for name in ("bare loop", "hub x1")}
                    profiles.update(profiling)
                print(f"repeat {repeat + 1}/{args.repeat}: {', '.join(t.name for t in targets)}", flush=True)
                for row in measure(targets, redis.url, args, schedule, profiling):
                    row["repeat"] = repeat
                    rows.append(row)
            report["rows"] = rows
            print()
            print(table(rows))
            if args.ramp:
                text, report["ramp"] = ramp_table(rows)
                print()
                print(text)
            report["goals"] = goals(rows, report.get("ramp"))
            print()
            for line in report["goals"]:
                print(line)
            print(f"      cores: {report['meta']['cores']}")
            report["profiles"] = {}
            for name, raw in profiles.items():
                if not raw.exists():
                    continue
                summary = report["profiles"][name] = profile.summarise(raw)
                print(f"\n{name} profile at {PROFILE_RATE:g} ev/s "
                      f"({summary['samples']} busy samples, {summary['partial_stacks']} of them cut short; "
                      f"stacks in {raw}; py-spy's pauses add to this round's latency):")
                for kind in ("self", "inclusive"):
                    print(f"  top {kind}:")
                    for frame, share in summary[kind]:
                        print(f"    {share:5.1f}%  {frame}")
            title = f"{args.subscribers} subscribers, 10 % each, {os.cpu_count()} CPUs"
            if args.repeat > 1:
                title += f" (median of {args.repeat} runs)"
            if latency_plot(rows, args.results / f"e2e-{stamp}.png", title):
                print(f"\nplot: {args.results / f'e2e-{stamp}.png'}")
    report["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    path = args.results / f"e2e-{stamp}.json"
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    print(f"results: {path}  ({report['meta']['seconds']} s)")


if __name__ == "__main__":
    main()
