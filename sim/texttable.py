"""Aligned plain-text tables for the terminal (the ``table`` output format of every command)."""
from __future__ import annotations


def align(rows: list[list[str]], left: int) -> str:
    """Rows of strings (the first is the header) as aligned columns: the first ``left`` columns are
    left-aligned (names), the others right-aligned (numbers)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     .rstrip() for row in rows) + "\n"
