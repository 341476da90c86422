"""Plain-text layout for people at a terminal."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from typing import TextIO


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell, under a header and a rule."""
    widths = [
        max([len(header), *(len(row[i]) for row in rows)]) for i, header in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    return [
        line(headers).rstrip(),
        "  ".join("-" * width for width in widths),
        *(line(row).rstrip() for row in rows),
    ]


def tables_within(
    headers: Sequence[str], rows: Sequence[Sequence[str]], width: int, *, keep: int = 1
) -> list[list[str]]:
    """:func:`table` split by columns into tables no wider than ``width`` (a column wider
    than that alone still gets a table of its own), each repeating the first ``keep``
    columns so a row can be told in every one."""
    kept = list(range(keep))
    groups: list[list[int]] = []
    for column in range(keep, len(headers)):
        candidate = [*groups[-1], column] if groups else [column]
        lines = table(
            [headers[i] for i in kept + candidate], [[r[i] for i in kept + candidate] for r in rows]
        )
        if groups and max(map(len, lines)) <= width:
            groups[-1] = candidate
        else:
            groups.append([column])
    return [
        table([headers[i] for i in kept + group], [[row[i] for i in kept + group] for row in rows])
        for group in groups or [[]]
    ]


class Folded(io.TextIOBase):
    """A text stream that folds every line longer than ``width`` at spaces, the rest of
    it indented under where its text starts."""

    def __init__(self, out: TextIO, width: int) -> None:
        self._out, self._width, self._pending = out, width, ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._out.write(self._fold(line) + "\n")
        return len(text)

    def flush(self) -> None:
        self._out.flush()

    def _fold(self, line: str) -> str:
        if len(line) <= self._width:
            return line
        indent = " " * (len(line) - len(line.lstrip()) + 2)
        return "\n".join(
            textwrap.wrap(
                line,
                self._width,
                subsequent_indent=indent,
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
