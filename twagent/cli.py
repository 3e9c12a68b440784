"""The `tw-agent` command line: flags, environment, logging, exit status.

Runs on the main thread; it is the only module that configures logging.
"""

import argparse
import logging
import os
import sys

from . import config as cfg
from . import logs
from .errors import ConfigError, TwAgentError
from .version import COMMIT, VERSION

log = logging.getLogger(__name__)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tw-agent",
        description="Run shell commands for Seqera Platform on this machine.",
    )
    parser.add_argument(
        "connection_id",
        metavar="AGENT_CONNECTION_ID",
        nargs="?",
        help="the connection ID from the platform's agent credentials",
    )
    parser.add_argument(
        "-t",
        "--access-token",
        help=f"personal access token (default: env {cfg.TOKEN_VARIABLE}; prefer the variable, "
        "a flag is visible to every user of this node)",
    )
    parser.add_argument(
        "-u",
        "--url",
        help=f"API endpoint URL (default: env {cfg.URL_VARIABLE}, else {cfg.DEFAULT_URL})",
    )
    parser.add_argument(
        "-w",
        "--work-dir",
        help="default work directory; must exist (default: $HOME/work)",
    )
    _add_tuning(parser)
    parser.add_argument(
        "-V", "--version", action="store_true", help="print the version and exit"
    )
    return parser


def _add_tuning(parser):
    def number(flag, kind, default, text):
        parser.add_argument(
            flag, type=kind, default=default, help=f"{text} (default: {default})"
        )

    number("--pool-size", int, cfg.POOL_SIZE, "commands run at once")
    number(
        "--reconnect-max",
        float,
        cfg.RECONNECT_MAX_SECONDS,
        "longest wait in seconds between reconnect attempts",
    )
    number(
        "--duplicate-wait",
        float,
        cfg.DUPLICATE_WAIT_SECONDS,
        "seconds to keep retrying while the platform says another agent is "
        "connected (close 4000)",
    )
    number(
        "--command-timeout",
        float,
        cfg.COMMAND_TIMEOUT_SECONDS,
        "seconds a command may run before it is killed (exit status 124)",
    )
    number(
        "--stop-grace",
        float,
        cfg.STOP_GRACE_SECONDS,
        "seconds running commands get to finish after SIGTERM or SIGINT",
    )
    parser.epilog = (
        f"Environment: {cfg.HEARTBEAT_VARIABLE} heartbeat interval (45s, 500ms, 2m, PT45S; default "
        f"45s); {cfg.TRACE_VARIABLE}=TRACE for trace logging."
    )


def build_config(args, environ):
    """The agent's Config, checked in start-up order; raises ConfigError."""
    user_name, passwd_name = cfg.resolve_user_name(environ)
    if passwd_name and passwd_name != user_name:
        log.warning("$USER is %s but uid %d is %s", user_name, os.getuid(), passwd_name)
    if os.getuid() == 0:
        log.warning("running as root: every command of the platform runs as root")
    home = os.path.expanduser("~")
    work_dir = cfg.resolve_work_dir(args.work_dir or os.path.join(home, "work"))
    url = cfg.check_url(args.url or environ.get(cfg.URL_VARIABLE) or cfg.DEFAULT_URL)
    if not args.connection_id:
        raise ConfigError("missing AGENT_CONNECTION_ID (see tw-agent --help)")
    token = _token(args, environ)
    _check_positive(args)
    return cfg.Config(
        connection_id=args.connection_id,
        token=token,
        url=url,
        work_dir=work_dir,
        user_name=user_name,
        heartbeat_seconds=cfg.heartbeat_from_env(environ),
        pool_size=args.pool_size,
        reconnect_max_seconds=args.reconnect_max,
        duplicate_wait_seconds=args.duplicate_wait,
        command_timeout_seconds=args.command_timeout,
        stop_grace_seconds=args.stop_grace,
        trace=cfg.trace_from_env(environ),
    )


def _token(args, environ):
    token = environ.pop(cfg.TOKEN_VARIABLE, None)
    if args.access_token:
        log.warning(
            "the token was given with -t: other users of this node can read it "
            "from the process list; prefer %s",
            cfg.TOKEN_VARIABLE,
        )
        token = args.access_token
    token = (token or "").strip()
    if not token:
        raise ConfigError(
            f"no access token: set {cfg.TOKEN_VARIABLE} or pass -t/--access-token"
        )
    logs.add_secret(token)
    return token


def _check_positive(args):
    if args.pool_size < 1:
        raise ConfigError("--pool-size must be at least 1")
    for flag in ("reconnect_max", "duplicate_wait", "command_timeout", "stop_grace"):
        if getattr(args, flag) < 0:
            raise ConfigError(
                "--{} must not be negative".format(flag.replace("_", "-"))
            )


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.version:
        print(f"tw-agent {VERSION} (commit {COMMIT})")
        return 0
    environ = os.environ
    logs.configure(cfg.trace_from_env(environ))
    if args.access_token:
        logs.add_secret(args.access_token.strip())
    try:
        config = build_config(args, environ)
        from .agent import Agent

        log.info(
            "tw-agent %s starting: user %s, work dir %s, platform %s",
            VERSION,
            config.user_name,
            config.work_dir,
            config.url,
        )
        return Agent(config, environ).run()
    except TwAgentError as exc:
        log.error("%s", exc, exc_info=exc.exit_status == 1)
        return exc.exit_status
    except Exception:
        log.exception("internal error; this is a bug in tw-agent")
        return 1


def entry_point():
    sys.exit(main())
