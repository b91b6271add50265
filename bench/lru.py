"""app.lru.LRU against the OrderedDict code it replaced, on its hot paths.

The events' per-dispatch recent-jobs step (a new job each time, so every put
evicts) and a plan-cache hit. Run: python -m bench.lru
"""

from __future__ import annotations

import timeit
from collections import OrderedDict
from collections.abc import Callable

from app.lru import LRU

RECENT = 10_000
JOBS = list(range(20_000))
SHAPES = list(range(100))


class ByHand:
    """As app/jobs/events.py and app/graphql/ws/plan.py had it."""

    def __init__(self) -> None:
        self._recent: OrderedDict[int, int] = OrderedDict()
        self._plans: OrderedDict[int, int] = OrderedDict((k, k) for k in SHAPES)

    def dispatch(self, job: int, key: int) -> None:
        last = self._recent.get(job)
        if last is not None and key <= last:
            return
        self._recent[job] = key
        self._recent.move_to_end(job)
        if len(self._recent) > RECENT:
            self._recent.popitem(last=False)

    def plan(self, shape: int) -> int | None:
        if shape in self._plans:
            self._plans.move_to_end(shape)
            return self._plans[shape]
        return None


class WithLRU:
    def __init__(self) -> None:
        self._recent: LRU[int, int] = LRU(RECENT)
        self._plans: LRU[int, int] = LRU(512)
        for shape in SHAPES:
            self._plans.put(shape, shape)

    def dispatch(self, job: int, key: int) -> None:
        last = self._recent.get(job)
        if last is not None and key <= last:
            return
        self._recent.put(job, key)

    def plan(self, shape: int) -> int | None:
        return self._plans.use(shape)


def per_call(function: Callable[[], None], number: int, calls: int) -> float:
    return min(timeit.repeat(function, number=number, repeat=5)) / number / calls


def measure(cache: ByHand | WithLRU) -> tuple[float, float]:
    dispatch, plan = cache.dispatch, cache.plan

    def dispatches() -> None:
        for job in JOBS:
            dispatch(job, 1)

    def plans() -> None:
        for shape in SHAPES:
            plan(shape)

    return per_call(dispatches, 5, len(JOBS)), per_call(plans, 2000, len(SHAPES))


def main() -> None:
    found: dict[str, list[tuple[float, float]]] = {"by hand": [], "app.lru.LRU": []}
    for _round in range(3):  # alternating, best of each: the machine is shared
        found["by hand"].append(measure(ByHand()))
        found["app.lru.LRU"].append(measure(WithLRU()))
    for name, rounds in found.items():
        dispatch = min(d for d, _ in rounds) * 1e9
        hit = min(h for _, h in rounds) * 1e9
        print(f"{name:12} dispatch step {dispatch:4.0f} ns | plan-cache hit {hit:4.0f} ns")


if __name__ == "__main__":
    main()
