"""`caseloop apikey new`: a key handed out once, and a keys-file line that admits exactly it; the tooling
shows personal data masked."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from caseloop_deploy.cli import app
from caseloop_deploy.deadletters import DeadLetter
from caseloop_events.runtime.auth import ApiKeyStore, Role


def test_a_new_key_is_printed_once_and_its_line_admits_it_in_its_role(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["apikey", "new", "--id", "fire-2026-11", "--role", "unit", "--unit-id", "U-FIRE"])

    assert result.exit_code == 0, result.output
    key = result.output.split("it is not stored anywhere): ")[1].split()[0]
    entry = json.loads(result.output.split("keys file entry: ")[1])
    assert key not in json.dumps(entry)
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps({"keys": [entry]}))
    principal = ApiKeyStore(keys_file).lookup(key)
    assert principal is not None
    assert (principal.subject, principal.role, principal.unit_id) == ("fire-2026-11", Role.UNIT, "U-FIRE")


def test_a_unit_key_without_its_unit_is_refused_with_a_plain_message() -> None:
    result = CliRunner().invoke(app, ["apikey", "new", "--id", "x", "--role", "unit"])

    assert result.exit_code == 2
    assert "names its unit_id" in result.output


def test_a_dead_letter_shows_a_reporter_masked() -> None:
    reported = {
        "type": "case.accepted",
        "payload": {"title": "路灯", "reporter": {"name": "王五", "phone": "13900000000"}},
    }
    value = base64.b64encode(json.dumps(reported, ensure_ascii=False).encode()).decode()
    letter = DeadLetter(0, 7, datetime(2026, 11, 28, tzinfo=UTC), {"error": "handler failed", "value_b64": value})

    shown = letter.shown()

    assert shown["value"]["payload"]["reporter"] == {"name": "王*", "phone": "139****0000"}
    assert shown["value"]["payload"]["title"] == "路灯"
