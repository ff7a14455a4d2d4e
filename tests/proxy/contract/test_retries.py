"""Meta's retry schedule: at once, then less and less often, for seven days."""

from __future__ import annotations

import pytest

from pseudowa.proxy.contract.retries import RetryPolicy
from pseudowa.proxy.contract.retries import human_duration


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


def test_retry_ages_read_as_a_person_would() -> None:
    assert [human_duration(s) for s in (12, 3.5 * 3600, 7 * 24 * 3600)] == [
        "12.0 s",
        "3.5 h",
        "7.0 days",
    ]
