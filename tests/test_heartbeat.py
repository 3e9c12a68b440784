import select

import pytest

from twagent.heartbeat import Heartbeat
from twagent.outbox import Outbox

pytestmark = pytest.mark.timeout(30)


def test_heartbeat_ticks_ask_the_main_thread_and_stop_cleanly():
    box = Outbox()
    beat = Heartbeat(0.05, box)
    beat.start()
    ticks = 0
    for _ in range(3):
        assert select.select([box], [], [], 5)[0] == [box]
        box.clear_wakeups()
        ticks += box.take_heartbeat()
    beat.stop()
    box.close()
    assert ticks >= 2


def test_heartbeat_a_failing_tick_does_not_end_the_thread(caplog):
    class Flaky(Outbox):
        calls = 0

        def request_heartbeat(self):
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("boom")
            super().request_heartbeat()

    box = Flaky()
    beat = Heartbeat(0.05, box)
    beat.start()
    assert select.select([box], [], [], 5)[0] == [box]
    beat.stop()
    box.close()
    assert "heartbeat tick failed" in caplog.text
    assert Flaky.calls >= 2
