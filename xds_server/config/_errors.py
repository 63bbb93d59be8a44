"""The configuration's exception."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration that cannot be used. The message names where and what.

    `where` is the file (or "request body") and `path` the field, e.g.
    `filters[1].source.image`.
    """

    def __init__(self, where: str, path: str, problem: str) -> None:
        self.where = where
        self.path = path
        self.problem = problem
        location = f"{where}: {path}" if path else where
        super().__init__(f"{location}: {problem}")
