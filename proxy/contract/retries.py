"""Meta's webhook retry policy (whatsapp-cloud-api.md §5): when a failed delivery is tried
again, and when Meta gives up on it."""

from __future__ import annotations

from dataclasses import dataclass

DAY = 24 * 3600.0


@dataclass(frozen=True)
class RetryPolicy:
    """Meta's: retried at once, then with decreasing frequency, dropped after 7 days.

    `delays_s[n]` is the wait before attempt `n` (0 is the first try) counted from the
    end of attempt `n - 1`; past the table, attempts come every `repeat_s`. Waits are
    multiplied by `time_scale` (0.0001 compresses 7 days into about 60 s) while the age
    that `max_age_s` bounds is kept in unscaled time.
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
        """True when a delivery this old (unscaled seconds since its first try) is dropped."""
        return age_s > self.max_age_s


def human_duration(seconds: float) -> str:
    """A retry age as a person reads it: `12.0 s`, `3.5 h`, `7.0 days`."""
    if seconds >= DAY:
        return f"{seconds / DAY:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.1f} s"
