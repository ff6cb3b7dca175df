"""pins: read an environment or requirement set, check how its Celery stack fits together, and
plan an upgrade ladder of pinned sets.

:func:`run_pins` is the stage's single entry point for the CLI: evidence in, an
:class:`~celery_doctor.pins.checks.Assessment` and a JSON-ready payload out.
"""

from __future__ import annotations

from typing import Any

from celery_doctor.pins.catalogue import Catalogue
from celery_doctor.pins.checks import Assessment, assess, broker_family
from celery_doctor.pins.interface import PinsError

__all__ = ["Assessment", "PinsError", "run_pins"]


def run_pins(requirement: str | None, python: str | None, to: str | None, constraints_dir: str | None,
             check_install: bool, broker_url: str | None) -> tuple[Assessment, dict[str, Any]]:
    from celery_doctor.pins.readers import read_file, read_interpreter  # not for `logs`, which reads the catalogue

    catalogue = Catalogue.shipped()
    broker_family(broker_url)  # a bad URL is bad input before anything slow happens
    if requirement:
        env = read_file(requirement)
        python_version = read_interpreter(python).python if python else None
    else:
        env = read_interpreter(python, broker_url)
        python_version = None
    assessment = assess(env, catalogue, python_version, broker_url)
    data: dict[str, Any] = {
        "environment": {"origin": env.origin, "format": env.format, "python": env.python,
                        "python_spec": env.python_spec, "installed": env.installed},
        **assessment.to_json(),
        "data_generated": catalogue.generated,
    }
    if env.installed and env.probe.get("transport"):
        data["transport_check"] = env.probe["transport"]
    if to:
        from celery_doctor.pins.ladder import plan, write_constraints

        current = assessment.versions.get("celery")
        if not current:
            raise PinsError("--to needs a celery version in the input (none is pinned or installed)")
        steps = plan(catalogue, current, to, python=assessment.pythons[0] if assessment.pythons else None,
                     broker=assessment.broker, keep_librabbitmq="librabbitmq" in assessment.versions,
                     start={n: v for n, v in assessment.versions.items() if n not in data.get("resolved", {})})
        data["ladder"] = [s.to_json() for s in steps]
        if constraints_dir:
            data["constraints"] = write_constraints(steps, constraints_dir)
        if check_install:
            _check_steps(data["ladder"], python, broker_url)
    return assessment, data


def _check_steps(ladder: list[dict[str, Any]], python: str | None, broker_url: str | None) -> None:
    from celery_doctor.pins.install_check import check_install, interpreter_version

    if not broker_url:
        raise PinsError("--check-install needs --broker URL (the worker must connect somewhere)")
    here = interpreter_version(python)
    xy = ".".join(here.split(".")[:2])
    for step in ladder:
        if xy not in step["pythons"]:
            step["install_check"] = {"ok": None, "summary": f"skipped: needs Python {', '.join(step['pythons'])}, "
                                                             f"this interpreter is {here}"}
            continue
        step["install_check"] = check_install(step["pins"], broker_url, python).to_json()
