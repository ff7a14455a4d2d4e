"""Meta's webhook retry policy (whatsapp-cloud-api.md §5): when a failed delivery is tried
again, and when Meta gives up on it."""

from __future__ import annotations

from dataclasses import dataclass

DAY = 24 * 3600.0
# The retry time scale when a replay runs as fast as it can (speed 0): Meta's seven days
# pass in about 3 s, so a bot that never answers 200 cannot hold a CI job for a week.
FAST_TIME_SCALE = 5e-6


def time_scale_for(speed: float, given: float | None = None) -> float:
    """The retry time scale of a run: `given` when set, else following `speed` (retries
    are compressed like the recorded gaps; speed 0 uses `FAST_TIME_SCALE`)."""
    if given is not None:
        return given
    return FAST_TIME_SCALE if speed == 0 else 1.0 / speed


@dataclass(frozen=True)
class RetryPolicy:
    """Meta's: retried at once, then with decreasing frequency, dropped after 7 days.

    `delays_s[n]` is the wait before attempt `n` (0 is the first try) counted from the
    end of attempt `n - 1`; past the table, attempts come every `repeat_s`. Waits are
    multiplied by `time_scale` (0.0001 compresses 7 days into about 60 s) while the age
    that `max_age_s` bounds is kept in unscaled time. Like Meta, a delivery is dropped
    once its next attempt would start outside the window, so no attempt is ever older.
    """

    delays_s: tuple[float, ...] = (
        0,
        0,
        10,
        30,
        120,
        600,
        1800,
        3600,
        3 * 3600,
        6 * 3600,
        12 * 3600,
        24 * 3600,
    )
    max_age_s: float = 7 * DAY
    time_scale: float = 1.0
    repeat_s: float = DAY

    def unscaled_delay(self, attempt: int) -> float:
        """The wait before `attempt` in Meta's time."""
        if attempt < len(self.delays_s):
            return float(self.delays_s[attempt])
        return self.repeat_s

    def delay(self, attempt: int) -> float:
        """The wait before `attempt` in this run's time (scaled)."""
        return self.unscaled_delay(attempt) * self.time_scale

    def gives_up(self, age_s: float) -> bool:
        """True when an attempt this old (unscaled seconds since the first try) falls
        outside the window: the delivery is dropped instead."""
        return age_s > self.max_age_s

    def schedule(self) -> list[float]:
        """When each attempt starts, in Meta's time since the first try, for a bot that
        fails every attempt at once: the last one is the last inside the window."""
        starts = [0.0]
        while True:
            next_start = starts[-1] + self.unscaled_delay(len(starts))
            if self.gives_up(next_start):
                return starts
            if len(starts) > 100_000:  # a zero-delay loop (a policy made by hand)
                return starts
            starts.append(next_start)

    def worst_case_s(self, timeout_s: float = 0.0) -> float:
        """Wall seconds from a delivery's first try until it is dropped, when the bot fails
        every attempt, each after `timeout_s` (its slowest possible failure)."""
        starts = self.schedule()
        return starts[-1] * self.time_scale + len(starts) * timeout_s

    def describe(self, timeout_s: float = 0.0) -> str:
        """One line for a person: how long a webhook the bot never accepts is retried."""
        attempts = len(self.schedule())
        span = human_duration(self.worst_case_s(timeout_s))
        window = human_duration(self.max_age_s)
        scale = "" if self.time_scale == 1 else f" scaled by {self.time_scale:g}"
        return (
            f"retries: a webhook the bot never accepts is dropped after {attempts} attempts, "
            f"at most {span} from its first try (Meta's {window} window{scale})"
        )

    def give_up_reason(self, attempts: int, age_s: float, last: str) -> str:
        """Why a delivery was dropped after `attempts`, the last starting `age_s` (unscaled)
        after the first try; `last` is how that one failed."""
        return (
            f"gave up after {attempts} attempts over {human_duration(age_s)} "
            f"(retry window {human_duration(self.max_age_s)}); last: {last}"
        )


def human_duration(seconds: float) -> str:
    """A retry age as a person reads it: `12.0 s`, `3.5 h`, `7.0 days`."""
    if seconds >= DAY:
        return f"{seconds / DAY:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.1f} s"
