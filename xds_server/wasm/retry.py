"""The one retry policy of every fetch: what is worth retrying, and how long to wait.

Retryable: connection errors, timeouts and a body cut short (the caller catches those),
and the statuses 408, 429 and 5xx. Never retried: 401, 403, 404, other 4xx, refused
destinations. Waits grow exponentially from ``backoff_base`` up to ``backoff_max`` with
jitter (a random wait in the upper half of the ceiling); a ``Retry-After`` header (seconds
or an HTTP date) replaces the computed wait, capped at ``retry_after_cap``.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, replace

__all__ = ["DEFAULT_RETRY", "RetryPolicy", "parse_retry_after"]


def parse_retry_after(value: str | None, *, cap: float, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value (delta seconds or an HTTP
    date), between 0 and ``cap``; ``None`` when absent or unreadable."""
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), cap)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return min(max(when.timestamp() - current, 0.0), cap)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently a failed fetch is tried again. Immutable.

    ``retries`` is the number of attempts after the first (0: never retry).
    """

    retries: int = 4
    backoff_base: float = 0.25
    """Ceiling of the first wait, seconds; doubled after each attempt."""
    backoff_max: float = 8.0
    """Largest ceiling, seconds."""
    retry_after_cap: float = 60.0
    """Longest wait a ``Retry-After`` header can ask for, seconds."""

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"RetryPolicy.retries must be >= 0 (got {self.retries!r})")
        for name in ("backoff_base", "backoff_max", "retry_after_cap"):
            if getattr(self, name) < 0:
                raise ValueError(f"RetryPolicy.{name} must be >= 0 (got {getattr(self, name)!r})")

    def overridden(
        self, *, retries: int | None = None, backoff_base: float | None = None,
        backoff_max: float | None = None,
    ) -> RetryPolicy:
        """This policy with the fields given (not ``None``) replaced."""
        return replace(
            self,
            retries=self.retries if retries is None else retries,
            backoff_base=self.backoff_base if backoff_base is None else backoff_base,
            backoff_max=self.backoff_max if backoff_max is None else backoff_max,
        )

    @staticmethod
    def retryable(status: int) -> bool:
        """True for statuses worth retrying: 408, 429 and 5xx."""
        return status in (408, 429) or status >= 500

    def exhausted(self, attempt: int) -> bool:
        """True when attempt number ``attempt`` (0 for the first) was the last allowed."""
        return attempt >= self.retries

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0 for the first): the
        ``Retry-After`` value when one is given and readable, else a jittered
        exponential backoff."""
        hinted = parse_retry_after(retry_after, cap=self.retry_after_cap)
        if hinted is not None:
            return hinted
        ceiling = min(self.backoff_max, self.backoff_base * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)


DEFAULT_RETRY = RetryPolicy()
"""The policy used unless a client or store is given another."""
