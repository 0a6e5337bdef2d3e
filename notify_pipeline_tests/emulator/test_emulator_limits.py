"""Rate limits: the GCRA itself on a fake clock (exact), then 130429 and 131056 over real HTTP
(counts with generous tolerances, never timings), and switching the limits off."""

from __future__ import annotations

import time

import httpx
import pytest

from notify_pipeline.emulator import EmulatorServer
from notify_pipeline.ratelimit import Gcra
from notify_pipeline_tests.support.emulator import assert_meta_error, post
from notify_pipeline_tests.support.emulator_fixtures import welcome


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_gcra_allows_a_burst_then_the_steady_rate() -> None:
    clock = FakeClock()
    limiter = Gcra(rate_per_s=10, burst=5, clock=clock)
    assert [limiter.allow("k") for _ in range(6)] == [True] * 5 + [False]
    clock.now += 0.1  # one emission interval frees one slot
    assert limiter.allow("k") and not limiter.allow("k")
    assert limiter.allow("other")  # keys are independent


def test_gcra_holds_the_rate_over_a_long_run() -> None:
    clock = FakeClock()
    limiter = Gcra(rate_per_s=80, burst=16, clock=clock)
    accepted = 0
    for _ in range(10_000):  # 10 s of requests, one per millisecond (1,000/s offered)
        accepted += limiter.allow("phone")
        clock.now += 0.001
    assert 80 * 10 <= accepted <= 80 * 10 + 16 + 1


def test_gcra_rejected_requests_cost_nothing() -> None:
    clock = FakeClock()
    limiter = Gcra(rate_per_s=1, burst=1, clock=clock)
    assert limiter.allow("k")
    for _ in range(100):
        assert not limiter.allow("k")
    clock.now += 1.0
    assert limiter.allow("k")


def test_gcra_pair_limit_pays_back_a_burst_at_the_normal_rate() -> None:
    # Meta: a burst of 45 borrows ahead; afterwards, one message per 6 s.
    clock = FakeClock()
    limiter = Gcra(rate_per_s=1 / 6, burst=45, clock=clock)
    assert all(limiter.allow("user") for _ in range(45))
    assert not limiter.allow("user")
    assert limiter.wait_s("user") == pytest.approx(6.0)
    clock.now += 5.9
    assert not limiter.allow("user")
    clock.now += 0.1
    assert limiter.allow("user")


def test_exceeding_the_throughput_gets_130429(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.configure(throughput_per_s=20, throughput_burst=5)
    started = time.monotonic()
    answers = [post(graph, emulator, welcome(to=f"+25078800{i:04d}")) for i in range(60)]
    elapsed = time.monotonic() - started
    accepted = sum(a.status_code == 200 for a in answers)
    refused = [a for a in answers if a.status_code != 200]
    for answer in refused:
        assert_meta_error(answer, 130429, "throughput")
    # At most the burst plus the rate over the time it took; at least the burst.
    assert 5 <= accepted <= 5 + 20 * elapsed + 1
    assert len(refused) >= 60 - (5 + 20 * elapsed + 1)
    stats = emulator.stats()
    assert stats["total"] == accepted and stats["by_code"] == {"130429": len(refused)}


def test_throughput_is_per_phone_number_id(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.configure(throughput_per_s=1, throughput_burst=2)
    codes = [
        graph.post(
            emulator.messages_url(phone), json=welcome(to=f"+2507880000{i}"), headers=emulator.auth_headers
        ).status_code
        for i, phone in enumerate(["111", "111", "111", "222"])
    ]
    assert codes == [200, 200, 400, 200]


def test_the_pair_limit_gives_131056_after_the_burst(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.configure(pair_burst=3, pair_interval_s=60)
    same = [post(graph, emulator, welcome(to="+250788000001")) for _ in range(5)]
    assert [a.status_code for a in same] == [200, 200, 200, 400, 400]
    assert_meta_error(same[3], 131056, "same phone number")
    # other recipients are not affected, and the notation of the number does not matter
    assert post(graph, emulator, welcome(to="+250788000002")).status_code == 200
    assert_meta_error(post(graph, emulator, welcome(to="250 788 000 001")), 131056)


def test_the_default_pair_limit_is_metas(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.configure(throughput_per_s=10_000, throughput_burst=100)
    answers = [post(graph, emulator, welcome(to="+250788000001")).status_code for _ in range(46)]
    assert answers == [200] * 45 + [400]


def test_limits_off_accepts_everything(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.configure(limits_enabled=False, throughput_per_s=1, throughput_burst=1, pair_burst=1)
    answers = [post(graph, emulator, welcome(to="+250788000001")) for _ in range(50)]
    assert all(a.status_code == 200 for a in answers)
    # and back on: the state starts fresh from the configured limits
    emulator.configure(limits_enabled=True)
    assert post(graph, emulator, welcome(to="+250788000009")).status_code == 200
    assert_meta_error(post(graph, emulator, welcome(to="+250788000010")), 130429)


def test_invalid_requests_do_not_use_quota(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.configure(throughput_per_s=1, throughput_burst=2)
    for _ in range(5):
        assert_meta_error(post(graph, emulator, {"messaging_product": "whatsapp"}), 131008)
    assert [post(graph, emulator, welcome(to=f"+2507880000{i}")).status_code for i in range(3)] == [
        200,
        200,
        400,
    ]


def test_reset_clears_limiter_state(emulator: EmulatorServer, graph: httpx.Client) -> None:
    emulator.configure(pair_burst=1, pair_interval_s=60)
    assert post(graph, emulator, welcome()).status_code == 200
    assert post(graph, emulator, welcome()).status_code == 400
    emulator.reset(keep_config=True)
    assert post(graph, emulator, welcome()).status_code == 200
    assert emulator.config()["pair_burst"] == 1


def test_the_throughput_burst_defaults_to_a_fifth_of_a_second(emulator: EmulatorServer) -> None:
    assert emulator.config()["effective_throughput_burst"] == 16  # 80 msg/s
    assert emulator.configure(throughput_per_s=1000)["effective_throughput_burst"] == 200
