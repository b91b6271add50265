"""app.logs.Throttle: what the outage, broker, change-feed and connection-limit logs share."""

from app.logs import Throttle


def test_a_repeated_condition_is_logged_once_per_period_per_key() -> None:
    throttle = Throttle(60.0)
    assert throttle.ready("OSError")
    assert not throttle.ready("OSError")
    # Another kind of outage is news of its own.
    assert throttle.ready("ConnectionRefusedError")
    assert throttle.ready() and not throttle.ready()


def test_ready_again_after_the_period() -> None:
    throttle = Throttle(0.0)
    assert throttle.ready() and throttle.ready()
