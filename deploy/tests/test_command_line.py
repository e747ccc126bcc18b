"""`caseloop`'s answers to a bad argument or an invalid setting: one line on stderr and exit status 2,
never a traceback or a framed panel; and `caseloop serve`, the container image's command, serving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from caseloop_deploy.cli import main
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.testing.broker import free_port


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    code = exited.value.code
    assert isinstance(code, int)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("timeline", "not-a-case-id"), "Invalid value for 'case_id'"),
        (("replay", "--service", "nowhere"), "'nowhere' is not one of 'intake'"),
        (("republish",), "Missing option '--service' / '-s'. Choose from: intake, triage, dispatch, supervision"),
        (("verify", "--workers", "0"), "Invalid value for '--workers'"),
        (("promote",), "Missing option '--service'"),
        (("replay", "--service", "intake", "--from", "yesterday"), "--from 'yesterday' is neither an offset"),
        (("apikey", "new", "--id", "x", "--role", "nobody"), "Invalid value for '--role'"),
        (("unheard-of",), "No such command 'unheard-of'"),
        (("migrate", "intake", "nowhere"), "'nowhere' is not one of 'intake', 'triage', 'dispatch', 'supervision'"),
        (("serve", "nowhere"), "'nowhere' is not one of 'intake', 'triage', 'dispatch', 'supervision'"),
        (("serve",), "Missing argument 'service'"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_status_2(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], said: str
) -> None:
    code, err = run(capsys, *args)

    assert code == 2
    assert err.count("\n") == 1, err
    assert err.startswith("caseloop: ")
    assert said in err


@pytest.mark.parametrize(
    ("verb", "variable", "value", "said"),
    [
        ("diff", "INTAKE_PORT", "eighty", "invalid setting INTAKE_PORT='eighty': Input should be a valid integer"),
        ("deadletter", "CASELOOP_TOPIC_PARTITIONS", "0", "CASELOOP_TOPIC_PARTITIONS='0': Input should be greater"),
        ("diff", "CASELOOP_PROFILE", "staging", "CASELOOP_PROFILE='staging': Input should be 'production' or"),
    ],
)
def test_an_invalid_setting_names_its_variable_in_one_line_and_exit_status_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, verb: str, variable: str, value: str, said: str
) -> None:
    monkeypatch.setenv(variable, value)

    code, err = run(capsys, *(("diff", "--service", "intake") if verb == "diff" else ("deadletter", "list")))

    assert code == 2
    assert err.count("\n") == 1, err
    assert said in err


def test_help_is_printed_and_no_verb_shows_it_with_exit_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as helped:
        main(["replay", "--help"])
    assert helped.value.code == 0
    assert "--from" in capsys.readouterr().out

    with pytest.raises(SystemExit) as bare:
        main([])
    assert bare.value.code == 2
    assert "replay" in capsys.readouterr().out


def test_serve_starts_the_named_service_with_its_settings_from_the_environment(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """The container image's command: `caseloop serve triage` answers /healthz as triage on the port
    TRIAGE_PORT names, on its broker and its database, and stops cleanly on SIGTERM."""
    port = free_port()
    environment = {
        **os.environ,
        "CASELOOP_SERVICE": "",
        "CASELOOP_PROFILE": "development",
        "CASELOOP_DATA_DIR": str(tmp_path),
        "TRIAGE_HOST": "127.0.0.1",
        "TRIAGE_PORT": str(port),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.kafka_bootstrap_servers,
        "KAFKA_IDEMPOTENT_PRODUCER": str(kafka_settings.kafka_idempotent_producer),
        "CASELOOP_TOPIC_PARTITIONS": str(kafka_settings.caseloop_topic_partitions),
        "CASELOOP_TOPIC_NAMESPACE": kafka_settings.caseloop_topic_namespace,
    }
    log = tmp_path / "triage.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "caseloop"), "serve", "triage"],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        health = wait_for_health(f"http://127.0.0.1:{port}/healthz", server, timeout=60.0)
        assert health["service"] == "triage", log.read_text()
        assert (tmp_path / "triage.db").exists()
    finally:
        server.terminate()
        stopped = server.wait(timeout=30)

    # uvicorn shuts down, then raises the signal again to end as its sender expects: -SIGTERM.
    assert stopped in (0, -signal.SIGTERM), log.read_text()
    assert "Application shutdown complete" in log.read_text()


def wait_for_health(url: str, server: subprocess.Popen[bytes], timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the service exited with {server.returncode}"
        try:
            answer = httpx.get(url, timeout=2.0)
            if answer.status_code == 200:
                report: dict[str, object] = answer.json()
                return report
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer 200 within {timeout}s")
