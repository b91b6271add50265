"""Tables that read in a terminal and paste into docs/ as Markdown."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = ()
) -> str:
    """A Markdown table, each column padded to its widest cell; the columns numbered in
    `right` (numbers, usually) aligned right."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = (
            str(cell).rjust(width) if index in right else str(cell).ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (width + 1) + ":" if index in right else "-" * (width + 2)
        for index, width in enumerate(widths)
    )
    return "\n".join([line(headers), rule + "|", *map(line, rows)])
