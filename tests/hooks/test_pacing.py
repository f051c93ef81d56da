"""QuotaPacer and the Ratelimit header parsing, without HTTP (a fake clock, no sleeping)."""

from __future__ import annotations

import logging
import threading

import pytest

from airflow_provider_cfimages.hooks.pacing import QuotaPacer, QuotaState, parse_quota_headers


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SleepingEvent(threading.Event):
    """An event whose waits advance the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        self.clock.now += timeout or 0.0
        return self.is_set()


def headers(ratelimit: str | None, policy: str | None = None) -> dict[str, str]:
    found = {}
    if ratelimit is not None:
        found["Ratelimit"] = ratelimit
    if policy is not None:
        found["Ratelimit-Policy"] = policy
    return found


def test_parses_cloudflares_headers() -> None:
    states = parse_quota_headers(headers('"default";r=50;t=30', '"default";q=1200;w=300'))
    assert states == [QuotaState("default", 50, 30.0, 1200, 300.0)]


def test_parses_several_items_parameters_in_any_order_and_tokens() -> None:
    states = parse_quota_headers(
        headers(
            '"default";t=30;r=50, burst;r=2;t=1',
            'burst;w=1;q=10, "default";q=1200;w=300',
        )
    )
    assert states == [
        QuotaState("default", 50, 30.0, 1200, 300.0),
        QuotaState("burst", 2, 1.0, 10, 1.0),
    ]


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage;;",
        '"default";r=-1;t=30',
        '"default";r=abc;t=30',
        '"default";t=30',
        '"default";r=5',
        '"default";r=5;t=?1',
        "(a b);r=1;t=1",
        "défaut;r=1;t=1",
    ],
)
def test_absent_or_malformed_headers_give_nothing(value: str | None) -> None:
    assert parse_quota_headers(headers(value, '"default";q=10;w=10')) == []


def test_a_policy_without_quota_still_paces_on_remaining() -> None:
    (state,) = parse_quota_headers(headers('"default";r=3;t=5', "nonsense;;"))
    assert (state.remaining, state.quota) == (3, None)


def test_no_headers_no_wait() -> None:
    clock = FakeClock()
    pacer = QuotaPacer(clock=clock)
    cancelled = SleepingEvent(clock)
    for _ in range(100):
        pacer.observe({})
        assert pacer.before_request(cancelled) == 0
    assert cancelled.waits == []


def test_waits_for_the_reset_once_the_reserve_is_reached() -> None:
    clock = FakeClock()
    pacer = QuotaPacer(reserve=0.1, clock=clock)
    cancelled = SleepingEvent(clock)
    policy = '"default";q=12;w=10'
    pacer.observe(headers('"default";r=2;t=7', policy))
    assert pacer.before_request(cancelled) == 0  # 2 left > 1.2 reserved
    clock.now += 1
    pacer.observe(headers('"default";r=1;t=6', policy))
    assert pacer.before_request(cancelled) == pytest.approx(6.0)
    assert cancelled.waits == [6.0]


def test_requests_sent_since_the_last_answer_count_against_the_quota() -> None:
    clock = FakeClock()
    pacer = QuotaPacer(reserve=0.0, clock=clock)
    cancelled = SleepingEvent(clock)
    pacer.observe(headers('"default";r=3;t=10', '"default";q=12;w=10'))
    # Three requests let go before any answer comes back: the fourth must wait.
    assert [pacer.before_request(cancelled) for _ in range(3)] == [0, 0, 0]
    assert pacer.before_request(cancelled) == pytest.approx(10.0)
    # A late answer to an earlier request (r=2) does not give back what was spent.
    pacer.observe(headers('"default";r=2;t=9', '"default";q=12;w=10'))
    assert pacer._known["default"][0] <= 12


def test_after_the_reset_the_new_window_is_paced_from_its_full_quota() -> None:
    clock = FakeClock()
    pacer = QuotaPacer(reserve=0.5, clock=clock)
    cancelled = SleepingEvent(clock)
    pacer.observe(headers('"default";r=0;t=4', '"default";q=4;w=4'))
    assert pacer.before_request(cancelled) == pytest.approx(4.0)
    # The new window: 4, keep 2; the first request went at the reset, one more may go.
    assert pacer.before_request(cancelled) == 0
    assert pacer.before_request(cancelled) == pytest.approx(4.0)


def test_the_tightest_of_several_policies_decides() -> None:
    clock = FakeClock()
    pacer = QuotaPacer(reserve=0.1, clock=clock)
    cancelled = SleepingEvent(clock)
    pacer.observe(
        headers(
            '"default";r=900;t=200, "burst";r=0;t=3', '"default";q=1200;w=300, "burst";q=20;w=5'
        )
    )
    assert pacer.before_request(cancelled) == pytest.approx(3.0)
    pacer.observe(
        headers(
            '"default";r=100;t=197, "burst";r=5;t=2', '"default";q=1200;w=300, "burst";q=20;w=5'
        )
    )
    assert pacer.before_request(cancelled) == pytest.approx(197.0)


def test_a_reset_of_zero_seconds_still_waits_a_moment() -> None:
    clock = FakeClock()
    pacer = QuotaPacer(reserve=0.1, clock=clock)
    cancelled = SleepingEvent(clock)
    pacer.observe(headers('"default";r=0;t=0'))
    assert pacer.before_request(cancelled) == 0  # the window has reset already


def test_the_wait_ends_at_once_when_cancelled() -> None:
    pacer = QuotaPacer(reserve=0.1)
    pacer.observe(headers('"default";r=0;t=300', '"default";q=1200;w=300'))
    cancelled = threading.Event()
    threading.Timer(0.2, cancelled.set).start()
    waited = pacer.before_request(cancelled)
    assert cancelled.is_set()
    assert waited < 60


def test_the_wait_is_logged_with_its_numbers(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    pacer = QuotaPacer(reserve=0.1, clock=clock)
    pacer.observe(headers('"default";r=100;t=42', '"default";q=1200;w=300'))
    with caplog.at_level(logging.INFO, logger="airflow_provider_cfimages.hooks.pacing"):
        pacer.before_request(SleepingEvent(clock))
    message = caplog.text
    for number in ("100 request(s) left of 1200", "300 s window", "10%", "120 requests", "42.0 s"):
        assert number in message, message


@pytest.mark.parametrize("reserve", [-0.1, 0.95, True])
def test_reserve_is_checked(reserve: float) -> None:
    with pytest.raises(ValueError, match="rate_limit_reserve"):
        QuotaPacer(reserve=reserve)


def test_threads_together_never_overshoot() -> None:
    pacer = QuotaPacer(reserve=0.0)
    pacer.observe(headers('"default";r=10;t=100', '"default";q=10;w=100'))
    stop_waiting = threading.Event()
    waits: list[float] = []
    lock = threading.Lock()

    def send() -> None:
        waited = pacer.before_request(stop_waiting)
        with lock:
            waits.append(waited)

    threads = [threading.Thread(target=send) for _ in range(12)]
    for thread in threads:
        thread.start()
    threading.Timer(0.3, stop_waiting.set).start()
    for thread in threads:
        thread.join()
    # Ten went at once; the two beyond the quota waited (until the test let them go).
    assert sorted(waits)[:10] == [0] * 10
    assert all(wait > 0 for wait in sorted(waits)[10:])
