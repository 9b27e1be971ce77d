"""The seeded fault schedule: one fault at a time, each with a target, a duration and a parameter.

The same seed gives the same list (what each fault does, to what, for how long); when each one
starts depends on how long the previous restarts took, so the runner records the times it saw.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NET_KINDS = ("latency", "stall", "reset", "partition")


@dataclass
class Fault:
    kind: str  # e.g. hub-sigkill, redis-sigterm, net-redis-stall, receiver-sigkill, lms-sigkill-spooled
    target: str
    duration: float
    param: float = 0.0
    pause: float = 1.0  # before the next fault
    started: float = 0.0
    ended: float = 0.0
    note: str = ""


def plan(seed: int, seconds: float, receivers: list[str], lrs: bool, data_loss: bool = False) -> list[Fault]:
    """Faults for a fault phase of `seconds` (their durations plus a pause of 1 to 4 s between two)."""
    rng = random.Random(seed)
    kinds = [
        ("hub-sigkill", 3), ("hub-sigterm", 2), ("redis-sigkill", 2), ("redis-sigterm", 1),
        ("receiver-sigkill", 2), ("lms-sigkill-spooled", 2), ("receiver-failing", 1),
        ("net-redis", 4), ("net-receiver", 3), ("net-consumers", 2),
    ]
    if lrs:
        kinds.append(("lrs-sigkill", 1))
    names, weights = zip(*kinds, strict=True)
    faults: list[Fault] = []
    spent = 0.0
    gone_at = seconds * 0.4
    while spent < seconds:
        if gone_at is not None and spent >= gone_at:
            faults.append(Fault("receiver-410", "wh-gone", rng.uniform(3, 6)))
            gone_at = None
        kind = rng.choices(names, weights)[0]
        if kind.startswith("hub-"):
            fault = Fault(kind, f"hub{rng.randrange(2)}", rng.uniform(0.5, 5))
        elif kind.startswith("redis-"):
            fault = Fault(kind, "redis", rng.uniform(0.5, 4))
        elif kind == "receiver-sigkill":
            fault = Fault(kind, rng.choice(receivers), rng.uniform(1, 20))
        elif kind == "lrs-sigkill":
            fault = Fault(kind, "lrs", rng.uniform(0.5, 8))
        elif kind == "lms-sigkill-spooled":
            fault = Fault(kind, f"lms{rng.randrange(3)}", rng.uniform(2, 6), param=rng.uniform(0.5, 1.5))
        elif kind == "receiver-failing":
            fault = Fault(kind, "wh-flaky", rng.uniform(3, 20))
        else:
            net = rng.choice(NET_KINDS if kind != "net-consumers" else ("reset", "partition", "stall"))
            if kind == "net-redis":
                target = f"hub{rng.randrange(2)}-redis"
            elif kind == "net-receiver":
                target = rng.choice([*receivers, *(["lrs"] if lrs else [])])
            else:
                target = "consumers-hubs"
            fault = Fault(f"{kind}-{net}", target, rng.uniform(1, 10) if net != "reset" else 0.0,
                          param=rng.uniform(0.05, 0.4) if net == "latency" else 0.0)
        fault.pause = rng.uniform(1, 4)
        faults.append(fault)
        spent += fault.duration + fault.pause
    if data_loss:
        faults.insert(len(faults) // 2, Fault("redis-data-lost", "redis", 1.0))
    return faults
