"""The agent's settings: read once at start-up from flags and environment.

Runs on the main thread before any other thread exists.
"""

import os
import pwd
import re
import stat
import typing

from .errors import ConfigError

DEFAULT_URL = "https://api.cloud.seqera.io"
HEARTBEAT_SECONDS = 45.0
MIN_HEARTBEAT_SECONDS = 0.1
MAX_HEARTBEAT_SECONDS = 3600.0
POOL_SIZE = 8
RECONNECT_MAX_SECONDS = 60.0
DUPLICATE_WAIT_SECONDS = 300.0
COMMAND_TIMEOUT_SECONDS = 3600.0
STOP_GRACE_SECONDS = 30.0
TRACE_VARIABLE = "LOGGER_LEVELS_IO_SEQERA_TOWER_AGENT"
HEARTBEAT_VARIABLE = "TOWER_AGENT_HEARTBEAT"
TOKEN_VARIABLE = "TOWER_ACCESS_TOKEN"
URL_VARIABLE = "TOWER_API_ENDPOINT"
MAX_TOKEN_FILE_BYTES = 64 * 1024

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PLAIN = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$")
_ISO = re.compile(
    r"^PT(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$",
    re.IGNORECASE,
)


class Config(typing.NamedTuple):
    connection_id: str
    token: str
    url: str
    work_dir: str
    user_name: str
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    pool_size: int = POOL_SIZE
    reconnect_max_seconds: float = RECONNECT_MAX_SECONDS
    duplicate_wait_seconds: float = DUPLICATE_WAIT_SECONDS
    command_timeout_seconds: float = COMMAND_TIMEOUT_SECONDS
    stop_grace_seconds: float = STOP_GRACE_SECONDS
    trace: bool = False
    token_file: typing.Optional[str] = None
    ca_file: typing.Optional[str] = None
    login_shell: bool = False
    audit_log: typing.Optional[str] = None
    state_dir: typing.Optional[str] = None


def parse_duration(text):
    """Seconds in `45`, `1.5`, `500ms`, `2m`, `PT1M30S`; None if unreadable."""
    text = text.strip()
    match = _PLAIN.match(text)
    if match:
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    match = _ISO.match(text)
    if match and any(match.groups()):
        hours, minutes, seconds = (float(g or 0) for g in match.groups())
        return hours * 3600 + minutes * 60 + seconds
    return None


def heartbeat_from_env(environ):
    """The heartbeat interval in seconds from TOWER_AGENT_HEARTBEAT."""
    text = environ.get(HEARTBEAT_VARIABLE)
    if text is None or text.strip() == "":
        return HEARTBEAT_SECONDS
    seconds = parse_duration(text)
    if seconds is None:
        raise ConfigError(
            f"{HEARTBEAT_VARIABLE}={text!r} is not a duration: use seconds (45, 1.5), a unit "
            "(500ms, 45s, 2m, 1h) or ISO-8601 (PT45S)"
        )
    if not MIN_HEARTBEAT_SECONDS <= seconds <= MAX_HEARTBEAT_SECONDS:
        raise ConfigError(
            f"{HEARTBEAT_VARIABLE}={text!r} is out of range: it must lie between 100ms and 1h"
        )
    return seconds


def trace_from_env(environ):
    level = environ.get(TRACE_VARIABLE, "").strip().upper()
    return level in ("TRACE", "DEBUG")


def resolve_user_name(environ):
    """The Unix user name: $USER, else the passwd entry of our uid."""
    try:
        passwd_name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        passwd_name = None
    name = environ.get("USER") or passwd_name
    if not name:
        raise ConfigError(
            f"cannot tell the user name: $USER is unset and uid {os.getuid()} "
            "has no passwd entry; set USER and start again"
        )
    return name, passwd_name


def resolve_work_dir(path):
    """An existing directory as an absolute, normalised path."""
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(full):
        raise ConfigError(
            f"work directory {full} does not exist (it is never created): "
            "create it or pass -w/--work-dir"
        )
    return full


def check_url(url):
    """Only https is acceptable; refuse anything else before any byte."""
    url = url.strip().rstrip("/")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme != "https":
        raise ConfigError(
            f"refusing API endpoint {url!r}: only https:// URLs are accepted, "
            "the token must never travel in clear text"
        )
    return url


class InsecureTokenFile(ConfigError):
    """The token file may be read by others: refused at start and later."""


def read_token_file(path):
    """The token in `path`, refused unless only its owner, this user, can
    read it (as ssh does with keys). Raises ConfigError."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError(f"cannot open token file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as stream:
        # fstat of the open file, so the checked file is the one read.
        info = os.fstat(stream.fileno())
        if info.st_uid != os.getuid():
            raise InsecureTokenFile(
                f"token file {path} is owned by uid {info.st_uid}, not by you "
                f"(uid {os.getuid()}): refusing it"
            )
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InsecureTokenFile(
                f"token file {path} has mode {stat.S_IMODE(info.st_mode):04o}: "
                f"group or others may read it; run chmod 600 {path}"
            )
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"token file {path} is not a regular file")
        data = stream.read(MAX_TOKEN_FILE_BYTES)
    token = data.decode("utf-8", "replace").strip()
    if not token:
        raise ConfigError(f"token file {path} is empty")
    return token


def state_dir(environ):
    """Where status files live: $XDG_STATE_HOME/tw-agent, else
    ~/.local/state/tw-agent."""
    base = environ.get("XDG_STATE_HOME", "").strip()
    if not base or not os.path.isabs(base):
        home = environ.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".local", "state")
    return os.path.join(base, "tw-agent")
