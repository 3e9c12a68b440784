import pytest

from twagent import cli
from twagent.version import VERSION


def test_cli_version_prints_version_and_commit(capsys):
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"tw-agent {VERSION} (commit ")


def test_cli_help_lists_defaults_and_variables(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--help"])
    assert stopped.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for word in [
        "TOWER_ACCESS_TOKEN",
        "TOWER_API_ENDPOINT",
        "https://api.cloud.seqera.io",
        "$HOME/work",
        "TOWER_AGENT_HEARTBEAT",
        "LOGGER_LEVELS_IO_SEQERA_TOWER_AGENT",
        "--pool-size",
        "(default: 8)",
    ]:
        assert word in text


def test_cli_bad_flag_is_exit_2(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--no-such-flag"])
    assert stopped.value.code == 2


@pytest.mark.parametrize("flag", ["--pool-size=0", "--stop-grace=-1"])
def test_cli_bad_numbers_are_config_errors(flag, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TOWER_ACCESS_TOKEN", "x" * 12)
    assert cli.main(["conn", "-w", str(tmp_path), flag]) == 2
