"""JSON parsing of untrusted documents: every failure is a ``ValueError``."""

from __future__ import annotations

import json
from typing import Any


def loads(raw: bytes | str) -> Any:
    """``json.loads``, but nesting too deep for the parser (``RecursionError``) and bytes
    that are not UTF-8 also raise ``ValueError``."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"JSON is not UTF-8 ({error.reason})") from None
