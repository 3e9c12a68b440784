import os
import select
import threading

from twagent.messages import CommandResponse
from twagent.outbox import Outbox


def test_outbox_put_from_thread_wakes_select():
    box = Outbox()
    worker = threading.Thread(
        target=box.put_response, args=(CommandResponse("a", b"", 0),)
    )
    worker.start()
    ready, _, _ = select.select([box], [], [], 5)
    worker.join()
    assert ready == [box]
    box.clear_wakeups()
    assert select.select([box], [], [], 0)[0] == []
    assert box.take_response().id == "a"
    assert box.take_response() is None
    box.close()


def test_outbox_full_drops_oldest_with_warning(caplog):
    box = Outbox(max_responses=2)
    for name in "abc":
        box.put_response(CommandResponse(name, b"", 0))
    assert [box.take_response().id, box.take_response().id] == ["b", "c"]
    assert "dropped the response to a" in caplog.text
    box.close()


def test_outbox_push_back_goes_first():
    box = Outbox()
    box.put_response(CommandResponse("new", b"", 0))
    box.push_back([CommandResponse("x", b"", 0), CommandResponse("y", b"", 0)])
    assert [box.take_response().id for _ in range(3)] == ["x", "y", "new"]
    box.close()


def test_outbox_heartbeat_flag_is_taken_once():
    box = Outbox()
    box.request_heartbeat()
    assert box.take_heartbeat()
    assert not box.take_heartbeat()
    box.close()


def test_outbox_many_wakeups_never_block():
    box = Outbox()
    for _ in range(100_000):
        box.wake()
    box.clear_wakeups()
    box.close()


def test_outbox_holds_tells_queued_ids():
    box = Outbox()
    box.put_response(CommandResponse("queued", b"", 0))
    assert box.holds("queued")
    assert not box.holds("other")
    box.take_response()
    assert not box.holds("queued")
    box.close()


def test_outbox_wakes_only_when_first_response_arrives():
    box = Outbox()
    for name in "abc":
        box.put_response(CommandResponse(name, b"", 0))
    # One wake-up byte for the three: the main thread takes until empty.
    assert os.read(box.fileno(), 100) == b"w"
    while box.take_response() is not None:
        pass
    box.put_response(CommandResponse("d", b"", 0))
    assert os.read(box.fileno(), 100) == b"w"
    box.close()


def test_outbox_response_put_while_main_thread_sleeps_wakes_it():
    # The main thread's turn: take until empty, look at pending(), sleep in
    # select(). A put that comes after pending() must end the sleep.
    box = Outbox()
    box.put_response(CommandResponse("a", b"", 0))
    box.clear_wakeups()
    assert box.take_response().id == "a"
    assert box.pending() == 0
    worker = threading.Thread(
        target=box.put_response, args=(CommandResponse("b", b"", 0),)
    )
    worker.start()
    ready, _, _ = select.select([box], [], [], 5)
    worker.join()
    assert ready == [box]
    box.close()
