"""Plain-text tables that fit a terminal: shrinking columns, ``…`` truncation, row marks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["RED", "TABLE_WIDTH", "Column", "render_table", "truncate"]

TABLE_WIDTH = 100
"""The width the admin commands' tables fit in."""
RED = "\x1b[31m"
_RESET = "\x1b[0m"
_ELLIPSIS = "…"
_GAP = "  "


@dataclass(frozen=True, slots=True)
class Column:
    """One table column.

    ``shrink`` columns give up width (down to ``min_width``, default: the header's
    width) when the table is too wide; the widest shrinkable column gives first.
    ``keep_end`` truncates at the start (``…/team/filter:v3``), for values whose end
    says most, like image references and paths.
    """

    header: str
    shrink: bool = False
    min_width: int | None = None
    align_right: bool = False
    keep_end: bool = False


def truncate(text: str, width: int, *, keep_end: bool = False) -> str:
    """``text`` on one line, cut to ``width`` characters with ``…`` where it was cut
    (at the end, or at the start with ``keep_end``)."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    if width <= 0:
        return ""
    if keep_end:
        return _ELLIPSIS + text[len(text) - width + 1:]
    return text[: width - 1] + _ELLIPSIS


def render_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    max_width: int = 100,
    marks: Sequence[str] | None = None,
    colors: Sequence[str | None] | None = None,
) -> str:
    """The table as text, no line longer than ``max_width`` characters (colour codes aside).

    ``marks`` (one per row, e.g. ``"!"``) adds a one-character first column that is
    always shown; ``colors`` (one ANSI code or None per row) colours whole rows, for
    terminals only. Cells are put on one line (whitespace collapsed) and truncated
    with ``…`` when their column had to shrink.
    """
    cells = [[" ".join(str(c).split()) for c in row] for row in rows]
    widths = [len(col.header) for col in columns]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    prefix = 2 if marks is not None else 0
    floors = [
        (col.min_width if col.min_width is not None else len(col.header)) if col.shrink else w
        for col, w in zip(columns, widths, strict=True)
    ]
    excess = prefix + sum(widths) + len(_GAP) * (len(columns) - 1) - max_width
    while excess > 0:
        candidates = [i for i, w in enumerate(widths) if w > floors[i]]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1

    def line(values: Sequence[str]) -> str:
        parts = []
        for col, width, value in zip(columns, widths, values, strict=True):
            text = truncate(value, width, keep_end=col.keep_end)
            parts.append(text.rjust(width) if col.align_right else text.ljust(width))
        return _GAP.join(parts).rstrip()

    out = [(" " * prefix) + line([col.header for col in columns])]
    for n, row in enumerate(cells):
        text = line(row)
        if marks is not None:
            text = f"{(marks[n] or ' ')[:1]} {text}"
        color = colors[n] if colors is not None else None
        out.append(f"{color}{text}{_RESET}" if color else text)
    return "\n".join(out)
