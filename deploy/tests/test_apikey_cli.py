"""`caseloop apikey new`: a key handed out once, and a keys-file line that admits exactly it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from caseloop_deploy.cli import app
from caseloop_events.auth import ApiKeyStore, Role


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
