"""An LMS process for the soak: `RealtimeBackend` (with its spool) sending simulated events at a steady rate.

`python -m bench.soak.publisher INDEX RATE SEED LOG` with `RTHUB_REDIS_URL`, `RTHUB_REDIS_PREFIX` and
`SOAK_SPOOL` in the environment. Every event gets a timestamp whose millisecond count is unique in
the run (`ms % PUBLISHERS == INDEX`, increasing), which survives translation to xAPI and Caliper, so
the checker can find an event again in an LRS or at a Caliper endpoint. One line per `send` goes to
LOG after it returns: `<ms> <course> <event name>`. SIGTERM stops sending and waits (up to 60 s) for
the spool, this process's and orphans it adopted, to be flushed, then writes the backend's counts to
LOG.counts.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.soak.world import HIDDEN, PUBLISHERS, VISIBLE
from hub.dev.simulator import Learner, SimulatedLMS
from rthub_lms.backend import RealtimeBackend

LEARNERS_PER_COURSE = 4


def main(index: int, rate: float, seed: int, log_path: Path) -> None:
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    courses = [*VISIBLE, HIDDEN]
    learners = [Learner(5000 + n, f"learner{n}", courses[n % len(courses)])
                for n in range(LEARNERS_PER_COURSE * len(courses))]
    lms = SimulatedLMS(seed=seed * 100 + index + int(time.time()) % 1000, learners=learners)
    spool = os.environ["SOAK_SPOOL"]
    backend = RealtimeBackend(redis_url=os.environ["RTHUB_REDIS_URL"], redis_prefix=os.environ["RTHUB_REDIS_PREFIX"],
                              spool_path=spool, timeout=0.2)
    last = 0
    period = 1.0 / rate
    next_at = time.monotonic()
    with log_path.open("a", encoding="utf-8") as log:
        while not stop:
            event = lms.next_event()
            ms = max(int(time.time() * 1000), last + 1)
            ms += (index - ms) % PUBLISHERS
            last = ms
            event["timestamp"] = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
            backend.send(event)
            log.write(f"{ms} {event['context']['course_id']} {event['name']}\n")
            log.flush()
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _pending(backend, Path(spool)):
            time.sleep(0.1)
    counts = dict(backend.counts)
    backend.close()
    Path(f"{log_path}.counts").write_text(json.dumps(counts))


def _pending(backend: RealtimeBackend, root: Path) -> bool:
    """Whether events still wait in the spool: this process's not yet flushed, or another's directory."""
    counts = backend.counts
    if counts["spooled"] > counts["flushed"] + counts["spool_dropped"]:
        return True
    own = f"{os.getpid()}-"
    return root.exists() and any(child.is_dir() and not child.name.startswith((own, ".")) for child in root.iterdir())


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
