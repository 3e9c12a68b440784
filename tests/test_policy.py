import pytest

from twagent.policy import DuplicateWatch, ReconnectPolicy


def ceilings(policy, codes):
    return [policy.next_delay(code) for code in codes]


def test_policy_backoff_doubles_to_the_cap_with_full_jitter():
    policy = ReconnectPolicy(
        max_delay_seconds=10, reset_after_seconds=5, rng=lambda: 1.0
    )
    assert ceilings(policy, [None] * 6) == [1, 2, 4, 8, 10, 10]


def test_policy_jitter_scales_the_ceiling():
    policy = ReconnectPolicy(60, 5, rng=lambda: 0.25)
    assert ceilings(policy, [None] * 3) == [0.25, 0.5, 1.0]


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([4001], [0.0]),
        ([4001, 4001, 4001], [0.0, 2, 4]),
        ([1006, 4001], [1, 2]),
        ([4000, 4000], [1, 2]),
    ],
)
def test_policy_4001_is_immediate_only_once(codes, expected):
    policy = ReconnectPolicy(60, 5, rng=lambda: 1.0)
    assert ceilings(policy, codes) == expected


def test_policy_resets_after_a_session_that_lasted():
    policy = ReconnectPolicy(60, reset_after_seconds=5, rng=lambda: 1.0)
    ceilings(policy, [None] * 4)
    policy.connected(100.0)
    policy.disconnected(104.0)  # too short: no reset
    assert policy.next_delay() == 16
    policy.connected(200.0)
    policy.disconnected(205.0)
    assert policy.next_delay(4001) == 0.0
    assert policy.next_delay() == 2


def test_duplicate_watch_fresh_process_waits_a_third():
    watch = DuplicateWatch(300)
    assert watch.refused(1000.0) == 100.0
    assert watch.is_first_refusal(1000.0)
    assert watch.refused(1050.0) == 50.0
    assert not watch.is_first_refusal(1050.0)
    assert watch.refused(1100.0) <= 0


def test_duplicate_watch_after_a_session_waits_the_full_window():
    watch = DuplicateWatch(300)
    watch.session_ok()
    assert watch.refused(10.0) == 300.0
    assert watch.refused(309.0) == 1.0
    watch.session_ok()
    assert watch.refused(400.0) == 300.0
