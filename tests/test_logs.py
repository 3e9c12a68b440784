import io
import logging

from twagent import logs


def test_logs_redaction_covers_message_args_and_traceback():
    stream = io.StringIO()
    logs.configure(trace=True, stream=stream)
    logs.add_secret("s3cr3t-token")
    log = logging.getLogger("twagent.test")
    log.info("token is %s", "s3cr3t-token")
    try:
        raise ValueError("bad s3cr3t-token")
    except ValueError:
        log.exception("failed")
    text = stream.getvalue()
    assert "s3cr3t-token" not in text
    assert text.count(logs.REDACTED) == 3


def test_logs_format_has_time_with_millis_and_level():
    stream = io.StringIO()
    logs.configure(trace=False, stream=stream)
    logging.getLogger("twagent.test").info("hello")
    logging.getLogger("twagent.test").debug("hidden")
    line = stream.getvalue().strip()
    assert line.endswith(" INFO - hello")
    assert line[2] == ":" and line[5] == ":" and line[8] == "."
    assert "hidden" not in stream.getvalue()


def test_logs_websocket_library_trace_stays_quiet():
    logs.configure(trace=True, stream=io.StringIO())
    assert logging.getLogger("websocket").getEffectiveLevel() >= logging.WARNING


def test_logs_shorten_cuts_long_commands():
    assert logs.shorten("x" * 10) == "x" * 10
    cut = logs.shorten("y" * 500)
    assert cut.startswith("y" * 200) and "500 chars" in cut
