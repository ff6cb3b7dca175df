"""A small backtracking resolver over the tracked packages, driven by the shipped release data.

It answers two questions: which versions would a fresh ``pip install`` pick for the packages a
requirement file leaves unpinned, and which fully pinned set belongs to a ladder step. It only
knows celery, kombu, amqp, billiard, vine, redis and librabbitmq; anything else is pip's business.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from celery_doctor.pins.catalogue import Catalogue, Release
from celery_doctor.pins.interface import TRACKED, PinsError

ORDER = ("celery", "kombu", "amqp", "vine", "billiard", "redis", "librabbitmq")
MAX_STEPS = 5000  # backtracking budget per resolution (forward checking keeps real ones under ~100)
SEARCH_SECONDS = 20.0  # wall-clock budget of one whole search (a ladder resolves many sets)


@dataclass
class Request:
    """What must be installed: package -> range (``""`` any), and extras asked of each package."""

    specs: dict[str, str]
    extras: dict[str, set[str]] = field(default_factory=dict)
    python: str | None = None
    # extra filter (e.g. "not known-bad"): (name, version, chosen so far) -> acceptable?
    accept: Callable[[str, str, dict[str, str]], bool] | None = None
    prefer_oldest: bool = False
    deadline: float | None = None  # time.monotonic() past which the search gives up (SearchTooLong)


class Unsatisfiable(PinsError):
    pass


class SearchTooLong(PinsError):
    """The search ran out of its time budget: not an answer, so never caught as "unsatisfiable"."""


def deadline_after(seconds: float = SEARCH_SECONDS) -> float:
    return time.monotonic() + seconds


def _python_ok(rel: Release, python: str | None) -> bool:
    return python is None or rel.supports_python(python) is not False


def resolve(request: Request, catalogue: Catalogue) -> dict[str, str]:
    """Exact versions for the requested packages and the tracked packages they pull in."""
    steps = 0

    def constraints(chosen: dict[str, str], extras: dict[str, set[str]]) -> tuple[dict[str, SpecifierSet],
                                                                                  dict[str, set[str]], set[str]]:
        specs = {n: SpecifierSet(s) for n, s in request.specs.items()}
        needed = set(request.specs)
        new_extras = {k: set(v) for k, v in extras.items()}
        for name, version in chosen.items():
            rel = catalogue.release(name, version)
            assert rel is not None
            for req in rel.dependencies(request.python, tuple(sorted(new_extras.get(name, ())))):
                dep = req.name.lower()
                if dep not in TRACKED:
                    continue
                needed.add(dep)
                specs[dep] = specs.get(dep, SpecifierSet()) & req.specifier
                if req.extras:
                    new_extras.setdefault(dep, set()).update(req.extras)
        return specs, new_extras, needed

    def fits_chosen(name: str, version: str, chosen: dict[str, str]) -> bool:
        """Whether ``name==version`` asks nothing of the packages already chosen that they are not."""
        rel = catalogue.release(name, version)
        assert rel is not None
        for req in rel.dependencies(request.python, tuple(sorted(request.extras.get(name, ())))):
            dep = req.name.lower()
            if dep in chosen and not req.specifier.contains(chosen[dep], prereleases=True):
                return False
        return True

    def search(chosen: dict[str, str]) -> dict[str, str] | None:
        nonlocal steps
        steps += 1
        if steps > MAX_STEPS:
            raise Unsatisfiable("the resolver gave up (too many combinations)")
        specs, _extras, needed = constraints(chosen, request.extras)
        # every choice so far must still satisfy what later choices demand
        for name, version in chosen.items():
            if name in specs and not specs[name].contains(version, prereleases=True):
                return None
        todo = [n for n in ORDER if n in needed and n not in chosen]
        if not todo:
            return chosen
        if request.deadline is not None and time.monotonic() > request.deadline:
            raise SearchTooLong("the search for a pinned set took too long; pin more of celery, kombu, amqp, "
                                "billiard, vine and redis in the input to narrow it")
        # forward checking: a package that has no candidate left under what is chosen makes this
        # branch dead now, not after every combination of the packages before it was tried
        options: dict[str, list[str]] = {}
        for name in todo:
            if not catalogue.versions(name):
                raise PinsError(f"no release data for {name}")
            options[name] = [v for v in catalogue.matching(name, str(specs.get(name, "")))
                             if _python_ok(catalogue.release(name, v), request.python)  # type: ignore[arg-type]
                             and fits_chosen(name, v, chosen)]
            if request.accept and name != todo[0]:
                # a known-bad combination with what is chosen already rules a version out for good
                options[name] = [v for v in options[name] if request.accept(name, v, chosen)]
            if not options[name]:
                return None
        name = todo[0]
        candidates = options[name]
        if not request.prefer_oldest:
            candidates.reverse()
        for version in candidates:
            if request.accept and not request.accept(name, version, chosen):
                continue
            found = search({**chosen, name: version})
            if found is not None:
                return found
        return None

    result = search({})
    if result is None:
        wanted = ", ".join(f"{n}{s}" for n, s in request.specs.items())
        raise Unsatisfiable(f"no set of released versions satisfies {wanted}"
                            + (f" on Python {request.python}" if request.python else ""))
    return dict(sorted(result.items(), key=lambda kv: ORDER.index(kv[0])))


def newest_patch(catalogue: Catalogue, name: str, line: str) -> str | None:
    """Newest non-yanked release of an X.Y line (``"4.4"`` -> ``"4.4.7"``)."""
    v = Version(line)
    return catalogue.newest(name, f">={v.major}.{v.minor},<{v.major}.{v.minor + 1}")
