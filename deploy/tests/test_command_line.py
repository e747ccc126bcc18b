"""`caseloop`'s answers to a bad argument or an invalid setting: one line on stderr and exit status 2,
never a traceback or a framed panel."""

from __future__ import annotations

import pytest

from caseloop_deploy.cli import main


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
