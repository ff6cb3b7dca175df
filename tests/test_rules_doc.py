"""docs/incident-rules.md is generated from the rules; a rule added without regenerating fails here."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_incident_rules_doc_is_generated_from_the_code() -> None:
    fresh = subprocess.run([sys.executable, str(ROOT / "scripts" / "rules_doc.py")], capture_output=True,
                           text=True, timeout=120, check=True).stdout
    assert fresh == (ROOT / "docs" / "incident-rules.md").read_text(), \
        "run: python scripts/rules_doc.py > docs/incident-rules.md"
    assert "| V21 |" in fresh and "| CD-K01 |" in fresh and "| CD-X01 |" in fresh
