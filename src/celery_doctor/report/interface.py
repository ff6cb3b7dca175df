"""The contract every output format fulfils."""

from __future__ import annotations

from abc import ABC, abstractmethod

from celery_doctor.model import DoctorError, Report


class ReportError(DoctorError):
    """A report could not be produced (bad format name, unwritable output)."""


class Renderer(ABC):
    #: the format builds its document from strings it redacts one by one (dict keys too), adding no
    #: text of its own that a pass over the result could find a secret in (JSON: no templates, no
    #: wrapping), so :func:`celery_doctor.report.render` redacts nothing more
    redacts_strings: bool = False

    @abstractmethod
    def render(self, report: Report, *, color: bool = False, width: int = 110) -> str:
        """Return the whole report as one string (redaction happens after)."""


def plain(value: object) -> str:
    """A summary value as a person reads it: {'network': 3} -> 'network 3'."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value)


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 connection', '3 connections' (never '1 connections' or 'connection(s)')."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def summary_items(summary: dict[str, object]) -> list[tuple[str, str]]:
    """The summary as a person reads it: units out of the key names (``longest_outage_s: 0.011``
    -> ``longest outage: 0.011 s``), a confidence as a percentage, absent values left out."""
    items = []
    for key, value in summary.items():
        if key == "events_by_kind" or value in (None, {}, [], ""):
            continue
        label = key
        text = plain(value)
        if key.endswith("_s") and isinstance(value, int | float):
            label, text = key[:-2], f"{value:g} s"
        elif key == "confidence" and isinstance(value, int | float) and value <= 1:
            text = f"{value:.0%}"
        items.append((label.replace("_", " "), text))
    return items


def short_names(names: list[str]) -> tuple[str, dict[str, str]]:
    """Input names without the folder they share, so a narrow column shows what tells them apart:
    ('examples/idle-cut/', {'examples/idle-cut/worker.log': 'worker.log', ...}). Names that share
    no folder are kept whole."""
    paths = [n for n in dict.fromkeys(names) if "/" in n]
    if len(paths) < 2:
        return "", {n: n for n in names}
    parts = [p.split("/")[:-1] for p in paths]
    common: list[str] = []
    for column in zip(*parts, strict=False):
        if len(set(column)) != 1:
            break
        common.append(column[0])
    prefix = "/".join(common) + "/" if common else ""
    if prefix in ("", "/"):
        return "", {n: n for n in names}
    return prefix, {n: n[len(prefix):] if n.startswith(prefix) else n for n in names}
