"""What a traceback's frames say about the process when the paste has no startup banner."""

from __future__ import annotations

import re

from celery_doctor.model import SourceInfo

# a frame in the code that opens, reads or writes the broker connection (kombu's connection and
# transports, py-amqp, redis-py's connection): Python's '  File "<path>", line N, in <name>'; of
# redis-py's client.py only the functions that run a command on the socket and drop it on an error
# (PubSub/Redis ``_execute``, 4.x+ ``_disconnect_raise``/``_disconnect_raise_connect``,
# ``_send_command_parse_response``) and retry.py's ``call_with_retry``: every Redis command passes
# ``execute_command``, a cut there says nothing about the connection
CONNECTION_FRAME = re.compile(
    r'File "[^"\n]*?/(?:kombu/(?:connection|transport/[\w/]+)|amqp/(?:connection|transport|method_framing|'
    r'abstract_channel)|redis/(?:connection|_parsers/\w+))\.py", line \d+, in \w+|'
    r'File "[^"\n]*?/redis/(?:client\.py", line \d+, in (?:_execute|_disconnect_raise(?:_connect)?|'
    r'_send_command_parse_response)|retry\.py", line \d+, in call_with_retry)\b')
# what ends a traceback: the exception line, at the start of a line ("OSError: Socket closed",
# "amqp.exceptions.AccessRefused: (0, 0): ...", "socket.timeout: timed out", a bare "KeyboardInterrupt")
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?::|$)", re.M)

# Python's traceback frames ('  File "<path>", line N, in <name>') inside an event-loop library: the
# process runs on it (the gevent/eventlet pools), even where the paste has no banner
# ("site-packages/gevent/hub.py", "src/gevent/greenlet.py", "site-packages/eventlet/hubs/poll.py")
GREEN_FRAME = re.compile(r'File "[^"\n]*?\b(gevent|eventlet)/[^"\n]*\.py", line \d+')


def scan_green_frames(sample: str, info: SourceInfo) -> None:
    """The green pool a worker's traceback frames run in, when the banner named no pool."""
    if "pool" not in info.meta and (m := GREEN_FRAME.search(sample)):
        info.meta["pool"] = m.group(1)
        info.meta["pool_from"] = "traceback frames"


def cut_connection_frame(text: str) -> tuple[int, str] | None:
    """(line, frame) of the last frame in the connection code when the text's traceback stops
    before its exception line (a paste cut short): a connection failure whose error is not shown."""
    frames = list(CONNECTION_FRAME.finditer(text))
    if not frames:
        return None
    last_frame = text.rfind('File "')
    rest = text[last_frame:].split("\n", 1)[1] if "\n" in text[last_frame:] else ""
    if EXCEPTION_LINE.search(rest):
        return None  # the traceback ends on its exception: a line the catalogue read, or not a connection error
    frame = frames[-1]
    return text.count("\n", 0, frame.start()) + 1, frame.group(0)
