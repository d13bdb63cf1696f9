"""The save schedule: which group of targets' fitted states a cycle encodes, and when the set is complete.

Why: encoding every target at once cost 0.6-1.0 s of CPU in one cycle at 1,000 targets;
spread over groups, a cycle encodes one group's share. Pure bookkeeping, so the rules are
checked here without a controller (the controller's use of it is in
``tests/sim/test_fit_budget.py``).
"""

from __future__ import annotations

from collections import Counter

from autoscaler.runtime.save_rounds import MAX_GROUPS, SaveRounds, group_count, group_of


def test_one_group_per_125_targets_at_most_eight_and_at_most_one_per_cycle_of_the_interval() -> None:
    assert [group_count(n, interval=300, loop=30) for n in (0, 1, 125, 126, 1000, 5000)] == [1, 1, 1, 2, 8, 8]
    assert group_count(1000, interval=300, loop=60) == 5, "each group still encoded once per interval"
    assert group_count(1000, interval=300, loop=600) == 1
    assert group_count(1000, interval=300, loop=0) == MAX_GROUPS


def test_groups_are_stable_and_about_even() -> None:
    keys = [f"llm/vllm-{i}" for i in range(1000)]
    sizes = Counter(group_of(k, 8) for k in keys)
    assert set(sizes) == set(range(8)) and max(sizes.values()) < 1.25 * 125
    # CRC-32, not the salted built-in hash: the same in every process, so a restart agrees.
    assert (group_of("llm/vllm-7", 8), group_of("llm/vllm-0", 8)) == (7, 4)


def test_the_groups_are_staggered_over_the_interval_and_due_one_at_a_time() -> None:
    rounds = SaveRounds()
    rounds.plan(1000, interval=240.0, loop=30.0, now=0.0)
    assert rounds.groups == 8 and rounds.due == [30.0 * (i + 1) for i in range(8)]
    assert rounds.next_due(29.0) is None
    encoded = []
    for now in range(30, 241, 30):
        group = rounds.next_due(float(now))
        if group is not None:
            rounds.record(group, [b"part %d" % group], 125, float(now))
            encoded.append(group)
    assert encoded == list(range(8)), "one per cycle, in due order"
    assert rounds.due[0] == 270.0 and rounds.next_due(269.0) is None, "each again one interval after its encoding"


def test_the_set_is_complete_once_every_group_has_an_encoding() -> None:
    rounds = SaveRounds()
    rounds.plan(300, interval=300.0, loop=30.0, now=0.0)
    assert rounds.groups == 3
    for group in (2, 0):
        rounds.record(group, [b"g%d" % group], 100, 10.0)
        assert rounds.complete() is None
    rounds.record(1, [b"g1a", b"g1b"], 100, 20.0)  # a group over the part size spills into two
    assert rounds.complete() == ([b"g0", b"g1a", b"g1b", b"g2"], 300)


def test_a_new_group_count_or_interval_regroups_and_waits_for_a_whole_new_round() -> None:
    rounds = SaveRounds()
    rounds.plan(200, interval=300.0, loop=30.0, now=0.0)
    for group in range(rounds.groups):
        rounds.record(group, [b"x"], 100, 5.0)
    assert rounds.complete() is not None
    rounds.plan(200, interval=300.0, loop=30.0, now=50.0)  # nothing changed: nothing lost
    assert rounds.complete() is not None
    rounds.plan(400, interval=300.0, loop=30.0, now=60.0)
    assert rounds.groups == 4 and rounds.complete() is None, "encodings of the old grouping are dropped"
    assert rounds.due == [60.0 + 75.0 * (i + 1) for i in range(4)]
    rounds.plan(400, interval=120.0, loop=30.0, now=70.0)
    assert rounds.due == [70.0 + 30.0 * (i + 1) for i in range(4)]
