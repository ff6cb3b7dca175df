#!/usr/bin/env python3
"""Regenerate src/celery_doctor/data/requirements.json from the released packages themselves.

One command:  python scripts/build_requirements_data.py  [--cache DIR] [--jobs N]

For every final release of celery (3.1 on), kombu, amqp, billiard, vine, redis-py and
librabbitmq it asks pip for the version list (``pip index versions``), downloads each release
with ``pip download --no-deps`` (a wheel when one installs here, else the sdist; for sdists whose
metadata cannot be built on this interpreter it asks for a wheel built for an older CPython) and
reads the declared requirements from the file itself:

* wheels: ``*.dist-info/METADATA`` (Requires-Dist, Requires-Python, Classifier);
* sdists: ``PKG-INFO`` plus ``*.egg-info/requires.txt``, or, in old sdists without it, the
  ``requirements/default.txt`` and ``requirements/extras/*.txt`` files their setup.py reads.

Downloads are kept in the cache directory, so a rerun only fetches new releases.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import email.parser
import json
import re
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "celery_doctor" / "data" / "requirements.json"

# package -> oldest release line worth shipping (celery 3.1 and what it can run with)
PACKAGES = {
    "celery": "3.1.0",
    "kombu": "3.0.0",
    "amqp": "1.4.0",
    "billiard": "3.3.0.0",
    "vine": "1.0.0",
    "redis": "2.10.0",
    "librabbitmq": "1.5.0",
}

# When pip cannot prepare an sdist on this interpreter, ask for a wheel built for one of these.
WHEEL_TARGETS = [
    ("2.7", "manylinux1_x86_64", "cp27mu"),
    ("3.6", "manylinux1_x86_64", "cp36m"),
    ("3.9", "manylinux2014_x86_64", "cp39"),
    ("2.7", "any", "none"),
]


def pip(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


# Yanked releases are missing from pip's version list but still installed by exact pins:
# fetch the ones the known-bad list or real requirement files name (pip marks them yanked).
YANKED_TOO = {"celery": ["5.0.6", "5.2.5"], "amqp": ["5.0.3", "5.0.4"]}


def exact_pins_in_known_bad() -> dict[str, set[str]]:
    path = ROOT / "src" / "celery_doctor" / "data" / "known_bad.json"
    out: dict[str, set[str]] = {}
    for entry in json.loads(path.read_text())["entries"]:
        for name, spec in entry["when"].items():
            for clause in spec.split(","):
                if clause.startswith("==") and "*" not in clause:
                    out.setdefault(name, set()).add(clause[2:])
    return out


def release_versions(name: str, oldest: str) -> list[str]:
    out = pip("index", "versions", name).stdout
    match = re.search(r"Available versions:\s*(.+)", out)
    if not match:
        raise SystemExit(f"pip index versions {name} gave no version list")
    versions = []
    for raw in match.group(1).split(","):
        raw = raw.strip()
        try:
            v = Version(raw)
        except InvalidVersion:
            continue
        if not v.is_prerelease and v >= Version(oldest):
            versions.append(raw)
    return sorted(versions, key=Version)


def _existing(cache: Path, name: str, version: str) -> Path | None:
    stems = {f"{name}-{version}", f"{name.replace('-', '_')}-{version}"}
    for path in cache.iterdir():
        for stem in stems:
            if path.name.startswith(stem + "-") or path.name.startswith(stem + ".tar") or \
                    path.name == stem + ".zip":
                return path
    return None


def download(name: str, version: str, cache: Path) -> tuple[Path | None, bool, str]:
    """Returns (file, yanked, note)."""
    found = _existing(cache, name, version)
    yanked_mark = cache / f"{name}-{version}.yanked"
    if found:
        return found, yanked_mark.exists(), ""
    spec = f"{name}=={version}"
    proc = pip("download", "--no-deps", "--no-build-isolation", spec, "-d", str(cache))
    note = ""
    if proc.returncode != 0:
        note = "sdist metadata did not build here; used a wheel built for an older CPython"
        for pyver, platform, abi in WHEEL_TARGETS:
            proc = pip("download", "--no-deps", "--only-binary=:all:", "--python-version", pyver,
                       "--platform", platform, "--abi", abi, "--implementation", "cp", spec,
                       "-d", str(cache))
            if proc.returncode == 0:
                break
        else:
            # pip found the sdist but cannot build its metadata here: take the file pip chose
            # (its URL from pip's own log) and read the requirement files inside it.
            proc = pip("download", "--no-deps", "--no-cache-dir", "-vvv", spec, "-d", str(cache))
            urls = re.findall(r"(https://\S+?/" + re.escape(name) + "-" + re.escape(version)
                              + r"\.(?:tar\.gz|zip))", proc.stdout + proc.stderr)
            if not urls:
                return None, False, "pip could not download it"
            target = cache / urls[0].rsplit("/", 1)[1]
            with urllib.request.urlopen(urls[0], timeout=120) as resp:
                target.write_bytes(resp.read())
            note = "sdist metadata did not build here; read the sdist's own requirement files"
    yanked = "yanked version" in proc.stderr or "yanked version" in proc.stdout
    if yanked:
        yanked_mark.write_text("yanked\n")
    return _existing(cache, name, version), yanked, note


def _requires_txt(text: str) -> list[str]:
    """setuptools' requires.txt: plain lines, then ``[extra]`` / ``[extra:marker]`` / ``[:marker]``."""
    out: list[str] = []
    extra = marker = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            head = line.strip("[]")
            extra, _, marker = head.partition(":")
            extra, marker = extra or None, marker or None
            continue
        conds = []
        if marker:
            conds.append(f"({marker})")
        if extra:
            conds.append(f'extra == "{extra}"')
        out.append(line + ("; " + " and ".join(conds) if conds else ""))
    return out


def _requirement_file(text: str, extra: str | None = None) -> list[str]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        out.append(line + (f'; extra == "{extra}"' if extra else ""))
    return out


def _metadata(text: str) -> dict[str, object]:
    msg = email.parser.Parser().parsestr(text)
    classifiers = msg.get_all("Classifier") or []
    pythons = sorted({c.rsplit("::", 1)[1].strip() for c in classifiers
                      if c.startswith("Programming Language :: Python ::")
                      and re.fullmatch(r"\d+\.\d+", c.rsplit("::", 1)[1].strip())}, key=Version)
    return {
        "requires": list(msg.get_all("Requires-Dist") or []),
        "requires_python": msg.get("Requires-Python"),
        "python_classifiers": pythons,
        "metadata_version": msg.get("Metadata-Version"),
    }


def read_release(path: Path) -> dict[str, object]:
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as zf:
            meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            info = _metadata(zf.read(meta).decode("utf-8", "replace"))
            info["requires_from"] = "METADATA"
            return info
    members: dict[str, bytes] = {}
    if path.name.endswith((".tar.gz", ".tgz", ".tar.bz2")):
        with tarfile.open(path) as tf:
            for m in tf.getmembers():
                if m.isfile() and (m.name.count("/") <= 3):
                    f = tf.extractfile(m)
                    if f is not None:
                        members[m.name.split("/", 1)[1] if "/" in m.name else m.name] = f.read()
    else:
        with zipfile.ZipFile(path) as zf:
            for n in zf.namelist():
                if n.count("/") <= 3 and not n.endswith("/"):
                    members[n.split("/", 1)[1] if "/" in n else n] = zf.read(n)

    def text(name: str) -> str:
        return members[name].decode("utf-8", "replace")

    info = _metadata(text("PKG-INFO")) if "PKG-INFO" in members else _metadata("")
    if info["requires"]:
        info["requires_from"] = "PKG-INFO"
        return info
    req_txt = [n for n in members if re.fullmatch(r"[^/]+\.egg-info/requires\.txt", n)]
    if req_txt:
        info["requires"] = _requires_txt(text(req_txt[0]))
        info["requires_from"] = req_txt[0]
    elif "requirements/default.txt" in members:
        reqs = _requirement_file(text("requirements/default.txt"))
        for name in sorted(members):
            m = re.fullmatch(r"requirements/extras/([\w-]+)\.txt", name)
            if m:
                reqs += _requirement_file(text(name), m.group(1))
        info["requires"] = reqs
        info["requires_from"] = "requirements/default.txt + requirements/extras/*.txt"
    else:
        info["requires_from"] = "none declared"
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "celery-doctor-releases")
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--output", type=Path, default=OUT)
    parser.add_argument("--only", nargs="*", default=None, help="only these packages (testing)")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)

    packages: dict[str, dict[str, object]] = {}
    problems: list[str] = []
    for name, oldest in PACKAGES.items():
        if args.only and name not in args.only:
            continue
        versions = release_versions(name, oldest)
        extra = set(YANKED_TOO.get(name, ())) | exact_pins_in_known_bad().get(name, set())
        versions = sorted(set(versions) | extra, key=Version)
        print(f"{name}: {len(versions)} releases", file=sys.stderr)
        releases: dict[str, object] = {}
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = {v: pool.submit(download, name, v, args.cache) for v in versions}
            for version in versions:
                path, yanked, note = futures[version].result()
                if path is None:
                    problems.append(f"{name} {version}: {note}")
                    continue
                entry = read_release(path)
                entry["file"] = path.name
                if yanked:
                    entry["yanked"] = True
                if note:
                    entry["note"] = note
                releases[version] = entry
        packages[name] = {"releases": releases}

    doc = {
        "generated": dt.date.today().isoformat(),
        "generator": "scripts/build_requirements_data.py (pip download --no-deps of each release)",
        "packages": packages,
        "problems": problems,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {args.output} ({sum(len(p['releases']) for p in packages.values())} releases, "  # type: ignore[arg-type]
          f"{len(problems)} problems)", file=sys.stderr)
    for p in problems:
        print("  " + p, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
