"""What a traceback's frames say about the process when the paste has no startup banner."""

from __future__ import annotations

import re

from celery_doctor.model import SourceInfo

# Python's traceback frames ('  File "<path>", line N, in <name>') inside an event-loop library: the
# process runs on it (the gevent/eventlet pools), even where the paste has no banner
# ("site-packages/gevent/hub.py", "src/gevent/greenlet.py", "site-packages/eventlet/hubs/poll.py")
GREEN_FRAME = re.compile(r'File "[^"\n]*?\b(gevent|eventlet)/[^"\n]*\.py", line \d+')


def scan_green_frames(sample: str, info: SourceInfo) -> None:
    """The green pool a worker's traceback frames run in, when the banner named no pool."""
    if "pool" not in info.meta and (m := GREEN_FRAME.search(sample)):
        info.meta["pool"] = m.group(1)
        info.meta["pool_from"] = "traceback frames"
