"""Exit statuses: the one list of what ``celery-doctor`` returns to the shell.

Scripts and CI jobs branch on these, so each has one meaning and the numbers never change.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0  # nothing at or above --fail-on
    FINDINGS = 1  # at least one finding at or above --fail-on
    BAD_INPUT = 2  # bad usage, unreadable input, unreachable broker: one line on stderr
    INTERNAL = 70  # a bug in celery-doctor (sysexits EX_SOFTWARE): one line, traceback with CELERY_DOCTOR_DEBUG=1
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)
