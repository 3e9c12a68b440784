from twagent.history import History
from twagent.messages import CommandResponse


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_history_repeat_id_is_refused_and_answered():
    history = History()
    assert history.start("a")
    assert not history.start("a")  # still running
    history.finish(CommandResponse("a", b"out", 0))
    assert not history.start("a")
    assert history.lookup("a").output == b"out"


def test_history_bounded_by_count():
    history = History(max_entries=3)
    for n in range(10):
        history.start(str(n))
        history.finish(CommandResponse(str(n), b"x", 0))
    assert len(history) == 3
    assert history.lookup("0") is None
    assert history.lookup("9") is not None


def test_history_bounded_by_bytes():
    history = History(max_bytes=1000)
    for n in range(10):
        history.finish(CommandResponse(str(n), b"x" * 300, 0))
    assert history.stored_bytes <= 1000


def test_history_bounded_by_age():
    clock = Clock()
    history = History(max_age_seconds=10, clock=clock)
    history.finish(CommandResponse("old", b"x", 0))
    clock.now = 11
    assert history.lookup("old") is None
    assert history.start("old")


def test_history_big_output_is_not_kept_but_still_not_rerun():
    history = History()
    history.start("big")
    history.finish(CommandResponse("big", b"x" * 1_000_000, 4))
    stored = history.lookup("big")
    assert stored.exit_status == 4
    assert b"already ran" in stored.output
    assert history.stored_bytes < 1000
    assert not history.start("big")
