"""A mergeable latency histogram: fixed log-spaced buckets, sparse counts.

Every histogram in every replica uses the same bucket bounds, so histograms of different
time buckets, revisions and replicas merge by adding counts, and a quantile of the merge
is as good as a quantile of the raw values: within one bucket's width (about 19%, the
answer is the bucket's geometric middle, so the error is at most about 9%).

Bucket 0 holds values below `MIN_MS`; bucket `i >= 1` holds values in
`[MIN_MS * RATIO**(i-1), MIN_MS * RATIO**i)`; the last bucket also holds everything
larger (about 88 s and up).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

__all__ = ["BUCKETS", "MIN_MS", "RATIO", "LatencyHistogram"]

MIN_MS = 0.1
"""Values below this (in milliseconds) share bucket 0."""
RATIO = 2 ** 0.25
"""Each bucket's upper bound over its lower bound."""
BUCKETS = 80
"""Number of buckets: bucket 79's lower bound is about 88 seconds."""

_LOG_RATIO = math.log(RATIO)


def bucket_of(ms: float) -> int:
    """The bucket index a value (milliseconds) falls in."""
    if not ms >= MIN_MS:  # also NaN
        return 0
    return min(BUCKETS - 1, int(math.log(ms / MIN_MS) / _LOG_RATIO) + 1)


def bucket_value(index: int) -> float:
    """The value a bucket stands for in quantiles: its geometric middle (ms)."""
    if index <= 0:
        return MIN_MS / 2
    return float(MIN_MS * RATIO ** (index - 0.5))


class LatencyHistogram:
    """Counts per bucket index (sparse). Mutable; not thread-safe (event loop only)."""

    __slots__ = ("counts", "total")

    def __init__(self, counts: Mapping[int, int] | None = None) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0
        if counts:
            self.merge(counts)

    def add(self, ms: float, n: int = 1) -> None:
        """Count `n` values of `ms` milliseconds."""
        i = bucket_of(ms)
        self.counts[i] = self.counts.get(i, 0) + n
        self.total += n

    def merge(self, counts: Mapping[int, int]) -> None:
        """Add another histogram's counts (bucket index -> count); bad indexes are clamped."""
        for i, n in counts.items():
            if n > 0:
                j = min(max(int(i), 0), BUCKETS - 1)
                self.counts[j] = self.counts.get(j, 0) + int(n)
                self.total += int(n)

    def quantile(self, q: float) -> float | None:
        """The `q` quantile (0..1) in milliseconds, or None when empty."""
        if self.total == 0:
            return None
        rank = max(1, math.ceil(min(max(q, 0.0), 1.0) * self.total))
        seen = 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            if seen >= rank:
                return bucket_value(i)
        return bucket_value(max(self.counts))  # pragma: no cover - rank <= total

    def to_dict(self) -> dict[str, int]:
        """JSON form: {"<index>": count} (JSON object keys are strings)."""
        return {str(i): n for i, n in sorted(self.counts.items())}

    @classmethod
    def from_items(cls, items: Iterable[tuple[int | str, int]]) -> LatencyHistogram:
        """From (index, count) pairs, e.g. `to_dict().items()`."""
        return cls({int(i): int(n) for i, n in items})
