# ruff: noqa: UP030, UP032  (runs on Python 2.7 / 3.4+: no f-strings)
"""Report the interpreter and its installed distributions as JSON (stdlib only).

Runs inside the user's interpreter, which may be Python 2.7 or 3.5+, so: no f-strings,
no annotations, nothing outside the standard library. Usage:

    python pins_probe.py [BROKER_URL]

With a broker URL it also imports the kombu transport that URL selects (no connection is
made) and says whether that worked.
"""

import json
import os
import platform
import re
import sys


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _headers(text):
    name = version = None
    for line in text.splitlines():
        if not line.strip():
            break
        if line.startswith("Name:") and name is None:
            name = line.split(":", 1)[1].strip()
        elif line.startswith("Version:") and version is None:
            version = line.split(":", 1)[1].strip()
    return name, version


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read(65536).decode("utf-8", "replace")
    except OSError:
        return ""


def distributions():
    """name -> {"version", "location"} for every dist-info / egg-info on sys.path (first wins)."""
    found = {}
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        try:
            names = sorted(os.listdir(entry))
        except OSError:
            continue
        for item in names:
            full = os.path.join(entry, item)
            if item.endswith(".dist-info"):
                meta = os.path.join(full, "METADATA")
            elif item.endswith(".egg-info"):
                meta = os.path.join(full, "PKG-INFO") if os.path.isdir(full) else full
            elif item.endswith(".egg") and os.path.isdir(full):
                meta = os.path.join(full, "EGG-INFO", "PKG-INFO")
            else:
                continue
            name, version = _headers(_read(meta))
            if name and version and canonical(name) not in found:
                found[canonical(name)] = {"version": version, "location": entry}
    return found


def transport_check(url):
    """Which kombu transport the URL selects, and whether it (and its client library) imports."""
    result = {"url_scheme": url.split("://", 1)[0], "ok": False}
    try:
        from kombu import Connection
    except Exception as exc:
        result["error"] = "import kombu: {0}: {1}".format(type(exc).__name__, exc)
        return result
    try:
        conn = Connection(url)
        transport = conn.transport  # instantiates the transport class: imports, no network
        result["transport"] = "{0}.{1}".format(type(transport).__module__, type(transport).__name__)
        result["ok"] = True
    except Exception as exc:
        result["error"] = "{0}: {1}".format(type(exc).__name__, exc)
    return result


def main(argv):
    info = {
        "python": ".".join(str(n) for n in sys.version_info[:3]),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "packages": distributions(),
    }
    if len(argv) > 1 and argv[1]:
        info["transport"] = transport_check(argv[1])
    sys.stdout.write(json.dumps(info, sort_keys=True))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
