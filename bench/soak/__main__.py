"""`python -m bench.soak --minutes M --seed S`: the fault soak (docs/reliability.md, "The fault soak").

Exit status 1 when the checker finds a silent loss or an unauthorized delivery, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import sys
import tempfile
from pathlib import Path

from bench.soak.checker import check
from bench.soak.consumers import Recorded
from bench.soak.report import render, silent_losses, unauthorized
from bench.soak.run import Config, Soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="publishing time (faults in the first 80 %%)")
    parser.add_argument("--seed", type=int, default=1, help="the fault schedule's seed")
    parser.add_argument("--rate", type=float, default=60.0, help="events/s over all LMS processes")
    parser.add_argument("--redis", choices=["single"], default="single",
                        help="Redis topology (only a single server so far)")
    parser.add_argument("--no-lrs", dest="lrs", action="store_false", help="leave the Ralph LRS out")
    parser.add_argument("--workdir", type=Path, help="where processes keep data and logs (default: a temp dir)")
    parser.add_argument("--report", type=Path, help="also write the report (Markdown) here")
    parser.add_argument("--settle", type=float, default=600.0, help="at most this long (s) for the run to settle")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rthub-soak-"))
    config = Config(args.minutes, args.seed, args.rate, workdir, lrs=args.lrs, settle=args.settle)
    collected = asyncio.run(Soak(config).run())
    for state in collected.clients.values():  # what the checker reads, kept for a second look
        state.streams = [Recorded(stream.record) for stream in state.streams]  # type: ignore[misc]
    with (workdir / "collected.pickle").open("wb") as out:
        pickle.dump(collected, out)
    result = check(collected)
    text = render(collected, result)
    print(text)
    if args.report:
        args.report.write_text(text)
    print(f"workdir: {workdir}", file=sys.stderr)
    return 1 if silent_losses(result) or unauthorized(result) else 0


if __name__ == "__main__":
    sys.exit(main())
