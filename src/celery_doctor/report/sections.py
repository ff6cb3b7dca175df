"""The per-input sections (config, broker, pins, repro), built once and shown by every format.

The text renderer's section builders (``config_text``, ``broker_text``, ...) are the one place
that decides what each input shows; markdown and HTML read the same tables from them, so the
three formats cannot drift apart. ``diagnose`` gets one section per input it was given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from celery_doctor.model import Report

TITLES = {"config": "Config", "broker": "Broker probe", "pins": "Package pins", "repro": "Reproduction",
          "report": "Celery report"}


@dataclass
class Block:
    """A table (title, header, rows of plain cells) or a paragraph (``text``)."""

    title: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    text: str = ""


@dataclass
class Section:
    name: str  # config, broker, pins, repro
    title: str
    renderables: list[RenderableType]

    @property
    def blocks(self) -> list[Block]:
        return [block for r in self.renderables if (block := to_block(r)) is not None]


def _cell(value: object) -> str:
    return value.plain if isinstance(value, Text) else str(value)


def to_block(renderable: RenderableType) -> Block | None:
    if isinstance(renderable, Table):
        header = [_cell(c.header) for c in renderable.columns] if renderable.show_header else []
        cells = [[_cell(v) for v in c._cells] for c in renderable.columns]
        rows = [list(row) for row in zip(*cells, strict=False)]
        return Block(title=_cell(renderable.title or ""), header=header, rows=rows)
    if isinstance(renderable, Text | str):
        text = _cell(renderable).strip()
        return Block(text=text) if text else None
    return None


def input_sections(report: Report) -> list[Section]:
    """One section per input: the command's own, or for diagnose each input it combined."""
    from celery_doctor.report.text import SECTIONS

    if report.command in SECTIONS:
        return [Section(report.command, TITLES.get(report.command, report.command),
                        SECTIONS[report.command](report))]
    out = []
    if report.command == "diagnose":
        for name, data in report.data.items():
            if name in SECTIONS and isinstance(data, dict) and data:
                part = Report(command=name, data=data)
                renderables = SECTIONS[name](part)
                if renderables:
                    out.append(Section(name, TITLES.get(name, name), renderables))
    return out
