"""Opening the files a user names: regular files only, with a size bound, one clear error.

A FIFO with no writer blocks ``open()`` forever and ``/dev/zero`` never ends, so every input
opener asks here first. Each stage passes its own error type, so the CLI still maps the
failure to that stage's one line and exit status.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
from pathlib import Path

from celery_doctor.model import DoctorError

# A config or requirement file larger than this is not one (the largest real ones are ~100 KB).
MAX_TEXT_BYTES = 16 * 1024 * 1024
_CODING = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")


def check_regular(path: Path | str, error: type[DoctorError], what: str = "file") -> os.stat_result:
    """``os.stat`` of ``path`` when it is a regular file; else ``error`` with one sentence."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise error(f"{path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path}: is a directory, not a {what}")
    if not stat.S_ISREG(info.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode) else
                "a character device" if stat.S_ISCHR(info.st_mode) else
                "a block device" if stat.S_ISBLK(info.st_mode) else
                "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file")
        raise error(f"{path}: is {kind}, not a regular {what} (pipe its text to stdin with - instead)")
    return info


def read_bytes(path: Path | str, error: type[DoctorError], what: str = "file",
               limit: int = MAX_TEXT_BYTES) -> bytes:
    """The whole of a regular file no larger than ``limit``."""
    info = check_regular(path, error, what)
    if info.st_size > limit:
        raise error(f"{path}: {info.st_size // (1024 * 1024)} MB is too large for a {what} "
                    f"(more than {limit // (1024 * 1024)} MB)")
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"{path}: too large for a {what} (more than {limit // (1024 * 1024)} MB)")
    return data


def source_encoding(data: bytes, path: Path | str, error: type[DoctorError], python: bool = False) -> str:
    """The codec of ``data``: UTF-8 (``utf-8-sig`` with a BOM: dropped, and written back), or for Python
    source the PEP 263 coding cookie of its first two lines."""
    if python:
        for line in data.splitlines()[:2]:
            found = _CODING.match(line)
            if found:
                name = found.group(1).decode("ascii", "replace")
                try:
                    encoding = codecs.lookup(name).name
                except LookupError:
                    raise error(f"{path}: unknown encoding {name!r} in its coding cookie") from None
                if encoding != "utf-8":
                    return encoding
                break
    return "utf-8-sig" if data.startswith(codecs.BOM_UTF8) else "utf-8"


def decode_text(data: bytes, path: Path | str, error: type[DoctorError], python: bool = False,
                lenient: bool = False) -> str:
    """The text of ``data`` (see :func:`source_encoding`); ``lenient`` replaces undecodable bytes."""
    encoding = source_encoding(data, path, error, python)
    try:
        return data.decode(encoding, errors="replace" if lenient else "strict")
    except UnicodeDecodeError as exc:
        lineno = data[:exc.start].count(b"\n") + 1
        raise error(f"{path}:{lineno}: not {encoding.replace('-sig', '')} text (byte {data[exc.start]:#04x} "
                    f"at offset {exc.start}); save it as UTF-8"
                    + (" or declare its encoding (# -*- coding: latin-1 -*-)" if python else "")) from None


def read_text(path: Path | str, error: type[DoctorError], what: str = "file", python: bool = False,
              limit: int = MAX_TEXT_BYTES) -> str:
    """A user's text file, read whole, bounded, decoded; ``error`` with one line when it cannot be."""
    return decode_text(read_bytes(path, error, what, limit), path, error, python)
