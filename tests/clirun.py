"""Running one short `tw-agent` command (--check, --status) to its end."""

import subprocess

from tests.agentproc import agent_command, agent_env


def home_of(tmp_path):
    """The HOME that the `start_agent` fixture gives the agent."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return home


def run_cli(platform, tmp_path, *args, env=None, timeout=60):
    """(exit status, output) of `tw-agent ARGS` in the agent's environment."""
    full_env = agent_env(platform, home_of(tmp_path), "2s", env)
    for name, value in (env or {}).items():
        if value is None:
            full_env.pop(name, None)
    result = subprocess.run(
        agent_command() + list(args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=full_env,
        timeout=timeout,
        check=False,
    )
    return result.returncode, result.stdout.decode("utf-8", "replace")
