"""The `tw-agent` command line: flags, environment, logging, exit status.

Runs on the main thread; it is the only module that configures logging.
"""

import argparse
import logging
import os
import sys

from . import config as cfg
from . import logs, memory
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
    _add_operation(parser)
    _add_tuning(parser)
    _add_modes(parser)
    parser.add_argument(
        "-V", "--version", action="store_true", help="print the version and exit"
    )
    return parser


def _add_operation(parser):
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        help="read the token from PATH (mode 0600, yours), again before each "
        f"reconnect, so it can be rotated (default: none; env {cfg.TOKEN_VARIABLE} "
        "or -t)",
    )
    parser.add_argument(
        "--ca-file",
        metavar="PATH",
        help="also trust the CAs in this PEM bundle, for a platform with a "
        "private CA (default: none; SSL_CERT_FILE and SSL_CERT_DIR also apply)",
    )
    parser.add_argument(
        "--login-shell",
        action="store_true",
        help="run each command with the login shell ($SHELL -l -c, else bash "
        "-l -c) so site profiles and `module` apply (default: sh -c)",
    )
    parser.add_argument(
        "--log-file",
        metavar="PATH",
        help="also log to PATH, with full dates, rotated by size (default: "
        "standard output only)",
    )
    parser.add_argument(
        "--log-max-bytes",
        type=int,
        default=logs.LOG_FILE_MAX_BYTES,
        metavar="N",
        help=f"rotate the log file at N bytes (default: {logs.LOG_FILE_MAX_BYTES})",
    )
    parser.add_argument(
        "--log-keep",
        type=int,
        default=logs.LOG_FILE_KEEP,
        metavar="N",
        help=f"rotated log files kept (default: {logs.LOG_FILE_KEEP})",
    )
    parser.add_argument(
        "--audit-log",
        metavar="PATH",
        help="append one JSON line per command to PATH: time, id, exit status, "
        "duration, output size, command (default: none)",
    )


def _add_modes(parser):
    parser.add_argument(
        "--check",
        action="store_true",
        help="check every step a start needs, one line each, then exit: 0 when "
        "all required steps pass, 1 otherwise",
    )
    parser.add_argument(
        "--status",
        action="store_true",
        help="show the running agents of this user (all, or the one "
        "AGENT_CONNECTION_ID) from $XDG_STATE_HOME/tw-agent (default "
        "~/.local/state/tw-agent); exit 0 only when running and connected",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run the agent against a local stand-in platform on 127.0.0.1 and "
        "show what happens (needs: pip install 'twagent[demo]')",
    )


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
        f"45s); {cfg.TRACE_VARIABLE}=TRACE for trace logging; HTTPS_PROXY or "
        "https_proxy (else ALL_PROXY) an http:// proxy, NO_PROXY or no_proxy the "
        "hosts reached directly; SSL_CERT_FILE, SSL_CERT_DIR the CA store; "
        "XDG_STATE_HOME where the status files live (default ~/.local/state)."
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
        token_file=_absolute(args.token_file),
        ca_file=_absolute(args.ca_file),
        login_shell=args.login_shell,
        audit_log=_absolute(args.audit_log),
        state_dir=cfg.state_dir(environ),
    )


def _absolute(path):
    return os.path.abspath(os.path.expanduser(path)) if path else None


def _token(args, environ):
    # Removed from our own environment at once: no child ever sees it.
    token = environ.pop(cfg.TOKEN_VARIABLE, None)
    if args.token_file:
        if args.access_token:
            raise ConfigError("give the token with -t or --token-file, not both")
        if token:
            log.info(
                "%s is ignored: the token comes from --token-file", cfg.TOKEN_VARIABLE
            )
        token = cfg.read_token_file(_absolute(args.token_file))
    elif args.access_token:
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
    if args.log_max_bytes < 1024 or args.log_keep < 1:
        raise ConfigError("--log-max-bytes must be at least 1024, --log-keep 1")
    for flag in ("reconnect_max", "duplicate_wait", "command_timeout", "stop_grace"):
        if getattr(args, flag) < 0:
            raise ConfigError(
                "--{} must not be negative".format(flag.replace("_", "-"))
            )


def _add_log_file(args):
    if not args.log_file:
        return
    path = _absolute(args.log_file)
    try:
        logs.add_file(path, args.log_max_bytes, args.log_keep)
    except OSError as exc:
        raise ConfigError(f"cannot open log file {path}: {exc.strerror}") from exc


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.version:
        print(f"tw-agent {VERSION} (commit {COMMIT})")
        return 0
    environ = os.environ
    logs.configure(cfg.trace_from_env(environ))
    if args.access_token:
        logs.add_secret(args.access_token.strip())
    if args.status:
        from . import status

        ids = [args.connection_id] if args.connection_id else None
        return status.report(cfg.state_dir(environ), ids)
    try:
        _add_log_file(args)
        if args.check:
            from . import check

            return check.run(args, environ)
        if args.demo:
            from . import demo

            return demo.run(args, environ)
        config = build_config(args, environ)
        from .agent import Agent

        log.info(
            "tw-agent %s starting: user %s, work dir %s, platform %s",
            VERSION,
            config.user_name,
            config.work_dir,
            config.url,
        )
        memory.tune_allocator()
        return Agent(config, environ).run()
    except TwAgentError as exc:
        log.error("%s", exc, exc_info=exc.exit_status == 1)
        return exc.exit_status
    except Exception:
        log.exception("internal error; this is a bug in tw-agent")
        return 1


def entry_point():
    sys.exit(main())
