"""The one backlog every delivery path keeps for a subscriber that is behind."""

from __future__ import annotations

from app.jobs.buffers import Backlog


def drain(backlog: Backlog[str]) -> list[str]:
    out = []
    while backlog:
        out.append(backlog.pop())
    return out


def test_a_subscriber_a_little_behind_still_gets_every_step() -> None:
    backlog: Backlog[str] = Backlog(limit=4, keep_all=4)
    for state in ("a1", "a2", "b1", "a3"):
        assert backlog.put(state[0], state)
    assert drain(backlog) == ["a1", "a2", "b1", "a3"]


def test_far_behind_it_gets_each_jobs_latest_in_the_order_of_their_latest_changes() -> None:
    backlog: Backlog[str] = Backlog(limit=4, keep_all=0)
    for state in ("a1", "b1", "a2", "c1", "b2"):
        assert backlog.put(state[0], state)
    assert drain(backlog) == ["a2", "c1", "b2"]


def test_past_the_limit_of_jobs_it_overflows_and_keeps_nothing() -> None:
    backlog: Backlog[str] = Backlog(limit=2, keep_all=2)
    assert backlog.put("a", "a1")
    assert backlog.put("b", "b1")
    assert not backlog.put("c", "c1")
    assert backlog.overflowed and not backlog
    assert not backlog.put("a", "a2")
    assert not backlog
