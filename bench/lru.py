"""The events' per-dispatch recent-jobs step and a plan-cache hit, as the code had
them (OrderedDict by hand) and with app.lru.LRU. Run: python -m bench.lru"""

import timeit
from collections import OrderedDict

from app.lru import LRU

N = 10_000
ids = list(range(20_000))


class Old:
    def __init__(self):
        self._recent = OrderedDict()
        self._plans = OrderedDict((k, k) for k in range(100))

    def dispatch(self, i, key):
        last = self._recent.get(i)
        if last is not None and key <= last:
            return
        self._recent[i] = key
        self._recent.move_to_end(i)
        if len(self._recent) > N:
            self._recent.popitem(last=False)

    def plan(self, k):
        if k in self._plans:
            self._plans.move_to_end(k)
            return self._plans[k]


class New:
    def __init__(self):
        self._recent = LRU(N)
        self._plans = LRU(1000)
        for k in range(100):
            self._plans.put(k, k)

    def dispatch(self, i, key):
        last = self._recent.get(i)
        if last is not None and key <= last:
            return
        self._recent.put(i, key)

    def plan(self, k):
        return self._plans.use(k)


def run(obj):
    d = obj.dispatch

    def disp():
        for i in ids:
            d(i, 1)

    p = obj.plan

    def plans():
        for k in range(100):
            p(k)

    return disp, plans


res = {}
for _round in range(3):
    for name, cls in (("before", Old), ("after", New)):
        disp, plans = run(cls())
        t1 = min(timeit.repeat(disp, number=5, repeat=5)) / 5 / len(ids)
        t2 = min(timeit.repeat(plans, number=2000, repeat=5)) / 2000 / 100
        res.setdefault(name, []).append((t1, t2))
for name, v in res.items():
    print(
        name,
        "dispatch (new job, evicting) %.0f ns" % (min(a for a, _ in v) * 1e9),
        "| plan hit %.0f ns" % (min(b for _, b in v) * 1e9),
    )
