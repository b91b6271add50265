"""app.lru.LRU: the bound the plan caches and the events' recent-job memory rely on."""

from app.lru import LRU, MISSING


def test_forgets_the_least_recently_used_past_its_size() -> None:
    cache: LRU[str, int | None] = LRU(2)
    cache.put("a", 1)
    cache.put("b", None)
    assert cache.use("a") == 1  # "a" is now the most recent: "b" goes first
    cache.put("c", 3)
    assert list(cache) == ["a", "c"]
    assert cache.use("b", MISSING) is MISSING


def test_a_plain_read_does_not_count_as_a_use() -> None:
    cache: LRU[str, int] = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert list(cache) == ["b", "c"] and len(cache) == 2
    assert cache.pop("b") == 2 and cache.pop("b") is None
