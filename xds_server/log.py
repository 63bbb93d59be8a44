"""structlog set-up: JSON lines in production, readable key-value on a terminal.

Loggers are named by subsystem (`xds_server.xds`, `xds_server.controller`,
`xds_server.wasm...`, `xds_server.runtime`); each can have its own level.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

__all__ = ["configure_logging"]

_SECRET_KEYS = frozenset({"password", "token", "authorization", "secret", "credentials"})


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Never let a secret-looking key reach a log line."""
    for key in event.keys() & _SECRET_KEYS:
        event[key] = "<redacted>"
    return event


def configure_logging(level: str = "info", fmt: str = "auto",
                      levels: Mapping[str, str] | None = None) -> None:
    """Configure structlog over stdlib logging once per process.

    `fmt`: "json", "console", or "auto" (console when stderr is a terminal).
    `levels`: per-subsystem levels, e.g. `{"xds_server.xds": "debug"}`.
    """
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.getLevelName(level.upper()))
    for name, lvl in (levels or {}).items():
        logging.getLogger(name).setLevel(logging.getLevelName(lvl.upper()))
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
