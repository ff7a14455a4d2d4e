"""Meta's retry schedule: at once, then less and less often, for seven days."""

from __future__ import annotations

import pytest

from pseudowa.proxy.contract.retries import DAY
from pseudowa.proxy.contract.retries import FAST_TIME_SCALE
from pseudowa.proxy.contract.retries import RetryPolicy
from pseudowa.proxy.contract.retries import human_duration
from pseudowa.proxy.contract.retries import time_scale_for


def test_retry_policy_schedule() -> None:
    policy = RetryPolicy()
    assert [policy.delay(n) for n in range(3)] == [0, 0, 10]
    assert policy.delay(12) == policy.delay(30) == 24 * 3600  # then daily
    compressed = RetryPolicy(time_scale=0.0001)
    assert compressed.delay(11) == pytest.approx(24 * 3600 * 0.0001)
    # Meta's window: retried for up to 7 days, then dropped
    age, attempts = 0.0, 1
    while not policy.gives_up(age + policy.unscaled_delay(attempts)):
        age += policy.unscaled_delay(attempts)
        attempts += 1
    assert 6 * 24 * 3600 < age <= 7 * 24 * 3600
    assert compressed.gives_up(7 * 24 * 3600 + 1) and not compressed.gives_up(7 * 24 * 3600)
    total_scaled = sum(compressed.delay(n) for n in range(attempts))
    assert 40 < total_scaled < 61  # seven days compressed into about a minute


def test_the_schedule_ends_with_the_last_attempt_inside_the_window() -> None:
    starts = RetryPolicy().schedule()
    assert len(starts) == 17  # twelve from the table, then one a day
    assert starts[0] == 0 and 6.9 * DAY < starts[-1] <= 7 * DAY
    assert starts[-1] + DAY > 7 * DAY  # one more would start outside it


def test_the_worst_case_is_what_a_run_may_wait_for_one_webhook() -> None:
    policy = RetryPolicy(delays_s=(0, 0, 10, 10), max_age_s=25, time_scale=0.5)
    assert policy.schedule() == [0, 0, 10, 20]
    assert policy.worst_case_s() == 10  # the last attempt starts 20 s of Meta's time in
    assert policy.worst_case_s(timeout_s=2) == 10 + 4 * 2  # each attempt timing out
    assert policy.describe(timeout_s=2) == (
        "retries: a webhook the bot never accepts is dropped after 4 attempts, "
        "at most 18.0 s from its first try (Meta's 25.0 s window scaled by 0.5)"
    )


def test_retries_follow_the_speed_unless_a_scale_is_given() -> None:
    assert time_scale_for(1.0) == 1.0  # real time: Meta's own schedule
    assert time_scale_for(4.0) == 0.25
    assert time_scale_for(0.0) == FAST_TIME_SCALE
    assert time_scale_for(0.0, given=1.0) == 1.0
    # As fast as possible: Meta's seven days in a few seconds.
    assert 1 < RetryPolicy(time_scale=FAST_TIME_SCALE).worst_case_s() < 5


def test_the_give_up_reason_names_its_numbers() -> None:
    reason = RetryPolicy().give_up_reason(17, RetryPolicy().schedule()[-1], "HTTP 500")
    assert (
        reason == "gave up after 17 attempts over 6.9 days (retry window 7.0 days); last: HTTP 500"
    )


def test_retry_ages_read_as_a_person_would() -> None:
    assert [human_duration(s) for s in (12, 3.5 * 3600, 7 * 24 * 3600)] == [
        "12.0 s",
        "3.5 h",
        "7.0 days",
    ]
