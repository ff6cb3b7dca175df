"""--check-install for real: the newest ladder step installs in a throwaway venv, imports, and a
worker started from it executes a task against the local RabbitMQ. Slow (about a minute), bounded."""

from __future__ import annotations

import sys

import pytest

from celery_doctor.pins.catalogue import Catalogue
from celery_doctor.pins.install_check import check_install
from celery_doctor.pins.ladder import plan


@pytest.mark.slow
@pytest.mark.broker
@pytest.mark.timeout(900)
def test_newest_ladder_step_installs_and_runs_a_worker(rabbitmq_url):
    catalogue = Catalogue.shipped()
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    newest = catalogue.versions("celery")[-1]
    steps = plan(catalogue, "5.3.6", newest, python=here)
    step = steps[-1]
    assert here in step.pythons, step
    result = check_install(step.pins, rabbitmq_url)
    stages = {s["stage"]: s["ok"] for s in result.stages}
    assert result.ok, (result.summary, result.log_tail)
    assert stages == {"venv": True, "pip install": True, "import": True, "worker ready": True,
                      "task sent": True, "task executed": True}
