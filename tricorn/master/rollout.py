"""Which workers to start and which to retire: the master's decisions, pure.

Rules: nothing here forks, signals or logs; ``plan()`` looks at the workers and returns
what the arbiter must do, so each rule can be read (and tested) on its own:

* a worker is *current* when it runs the current generation (HUP bumps it) and is not
  marked for recycling; every other live worker is *old*;
* missing current workers are started (unless the crash back-off says wait);
* an old worker is retired (SIGTERM: it drains) only once enough current workers are
  ready to keep the target serving; so HUP and recycling never dip capacity;
* extra current workers (after TTOU) are retired, booting ones first, then the oldest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from tricorn.master.process import WorkerProcess, WorkerState


def backoff_delay(failures: int, base: float = 0.1, cap: float = 10.0) -> float:
    """Seconds to wait before respawning after ``failures`` crashes in a row.

    The first crash is replaced at once (a kill -9 must not cost capacity), then the wait
    doubles from ``base`` up to ``cap``; a worker reaching *ready* resets the count.
    """
    if failures <= 1:
        return 0.0
    return float(min(cap, base * 2 ** (failures - 2)))


def is_current(worker: WorkerProcess, generation: int) -> bool:
    return (
        worker.state is not WorkerState.STOPPING
        and worker.generation == generation
        and worker.recycle_reason is None
    )


@dataclasses.dataclass
class Plan:
    """What the arbiter must do now, in this order: start ``spawn`` workers, then retire
    each of ``retire``. ``ready`` current workers serve; ``settled`` once they are the
    target and no old worker serves any more (a reload or the first start is done)."""

    spawn: int
    retire: list[WorkerProcess]
    ready: int
    settled: bool


def plan(workers: Iterable[WorkerProcess], generation: int, target: int, may_spawn: bool) -> Plan:
    """The next steps towards ``target`` current workers (see the module note)."""
    live = [w for w in workers if w.state is not WorkerState.STOPPING]
    current = [w for w in live if is_current(w, generation)]
    old = sorted((w for w in live if not is_current(w, generation)), key=lambda w: w.born)
    missing = target - len(current)
    spawn = missing if missing > 0 and may_spawn else 0

    ready = sum(1 for w in current if w.state is WorkerState.READY)
    # An old worker that is not serving yet goes at once; a serving one only when enough
    # new ones are ready to take its place (oldest first).
    retire = [w for w in old if w.state is WorkerState.BOOTING]
    serving_old = [w for w in old if w.state is WorkerState.READY]
    while serving_old and ready + len(serving_old) > target:
        retire.append(serving_old.pop(0))

    # The workers just started count as current (booting) ones.
    extra = len(current) + spawn - target
    if extra > 0:
        # Booting ones first (nothing to drain), then the oldest.
        by_preference = sorted(current, key=lambda w: (w.state is WorkerState.READY, w.born))
        retire.extend(by_preference[:extra])
    return Plan(spawn, retire, ready, settled=not serving_old and ready >= target)
