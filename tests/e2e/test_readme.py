"""The README's session works as written, however often it is run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import Service
from tests.support import env_for

ROOT = Path(__file__).resolve().parents[2]


def readme_session() -> str:
    """The shell block after "A session with the demo" in README.md."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"A session with the demo.*?```bash\n(.*?)```", readme, re.S)
    assert found, "README.md: the demo session block is missing"
    return found.group(1)


def run(service: Service, script: str, cwd: Path) -> list[dict[str, object]]:
    """Run the block against the test's service; the JSON answers it printed."""
    script = script.replace("localhost:8000", service.base_url.split("//")[1])
    script = script.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    out = subprocess.run(
        ["bash", "-euc", script],
        cwd=cwd,
        env=env_for(service.settings),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    decoder, answers, at = json.JSONDecoder(), [], out.find("{")
    while at != -1:
        answer, end = decoder.raw_decode(out, at)
        answers.append(answer)
        at = out.find("{", end)
    return answers


def test_the_readme_session_can_be_run_again_without_a_conflict(
    service: Service, tmp_path: Path
) -> None:
    first = run(service, readme_session(), tmp_path)
    again = run(service, readme_session(), tmp_path)

    for sent, resent, usage in (first, again):
        assert (sent["rejected"], sent["conflicts"]) == (0, 0), sent
        assert (resent["duplicates"], resent["conflicts"]) == (1, 0), resent
        assert usage["tenant_id"] == "t_acme", usage
    assert (tmp_path / "usage.csv").read_text().startswith("workspace_id,")
