"""The exception tree of the agent and the exit status each branch maps to.

Library exceptions become these in `connection.py`; `cli.py` turns them into
exit statuses. Nothing here runs on a thread of its own.
"""


class TwAgentError(Exception):
    """Root of every error the agent raises on purpose."""

    exit_status = 1


class AgentBug(TwAgentError):
    """Something the agent did not expect: logged with its traceback."""

    exit_status = 1


class ConfigError(TwAgentError):
    """A bad flag, variable or environment: fixing it needs the user."""

    exit_status = 2


class RefusedError(TwAgentError):
    """The platform refused us for good (bad token, old API): no retry."""

    exit_status = 3


class DuplicateAgentError(TwAgentError):
    """Another agent holds this connection ID (close code 4000)."""

    exit_status = 4


class ConnectionLost(TwAgentError):
    """The link to the platform failed in a way a retry can heal."""

    def __init__(self, reason, close_code=None):
        super().__init__(reason)
        self.reason = reason
        self.close_code = close_code


class ProtocolError(TwAgentError):
    """A message from the platform we cannot use: warn and skip it.

    `request_id` is set when the message was a command request whose id we
    could read, so that it can still get its one response.
    """

    def __init__(self, reason, request_id=None):
        super().__init__(reason)
        self.request_id = request_id


class ShutdownRequested(BaseException):
    """Unwinds the loops on a second signal.

    It derives from BaseException so that no `except Exception` on the way
    out can swallow it.
    """

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum
