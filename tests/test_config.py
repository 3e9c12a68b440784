import os

import pytest

from twagent import config
from twagent.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45", 45.0),
        ("1.5", 1.5),
        ("500ms", 0.5),
        ("45s", 45.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("PT45S", 45.0),
        ("PT1M30S", 90.0),
        ("pt0.5s", 0.5),
        ("PT1H", 3600.0),
        (" 10s ", 10.0),
    ],
)
def test_config_duration_parses(text, seconds):
    assert config.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "10x", "-1", "PT", "1.2.3", "s", "P1D"])
def test_config_duration_unreadable_is_none(text):
    assert config.parse_duration(text) is None


@pytest.mark.parametrize("text", ["50ms", "0", "2h", "PT3601S"])
def test_config_heartbeat_out_of_range_names_variable(text):
    with pytest.raises(ConfigError, match="TOWER_AGENT_HEARTBEAT"):
        config.heartbeat_from_env({"TOWER_AGENT_HEARTBEAT": text})


def test_config_heartbeat_default_is_45s():
    assert config.heartbeat_from_env({}) == 45.0


def test_config_heartbeat_bounds_are_inclusive():
    assert config.heartbeat_from_env({"TOWER_AGENT_HEARTBEAT": "100ms"}) == 0.1
    assert config.heartbeat_from_env({"TOWER_AGENT_HEARTBEAT": "1h"}) == 3600.0


@pytest.mark.parametrize("level", ["TRACE", "trace", "DEBUG"])
def test_config_trace_levels_turn_trace_on(level):
    assert config.trace_from_env({"LOGGER_LEVELS_IO_SEQERA_TOWER_AGENT": level})


def test_config_trace_off_by_default():
    assert not config.trace_from_env({})
    assert not config.trace_from_env({"LOGGER_LEVELS_IO_SEQERA_TOWER_AGENT": "INFO"})


@pytest.mark.parametrize(
    "url", ["http://example.org", "ws://x", "example.org", "ftp://a", "HTTP://a"]
)
def test_config_non_https_url_is_refused(url):
    with pytest.raises(ConfigError, match="only https"):
        config.check_url(url)


def test_config_https_url_loses_trailing_slash():
    assert config.check_url("https://h.example/api/") == "https://h.example/api"


def test_config_work_dir_is_absolute_and_keeps_symlinks(tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    monkeypatch.chdir(tmp_path)
    assert config.resolve_work_dir("link/./") == str(link)
    assert config.resolve_work_dir("real/../link") == str(link)


def test_config_missing_work_dir_is_not_created(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.resolve_work_dir(str(tmp_path / "absent"))
    assert not (tmp_path / "absent").exists()


def test_config_user_from_env_first():
    name, passwd_name = config.resolve_user_name({"USER": "someone"})
    assert name == "someone"
    assert passwd_name


def test_config_user_falls_back_to_passwd():
    import pwd

    name, _ = config.resolve_user_name({})
    assert name == pwd.getpwuid(os.getuid()).pw_name
