"""The pure parts of the status, pause and release annotations (no API server needed).

Why: an operator types these annotations by hand; a typo must pause (the operator asked to
stop) rather than be ignored, and the WouldScale message must appear only when something
would change.
"""

from __future__ import annotations

import json

from autoscaler.kube.status import (
    ORIGINAL_MIN_REPLICAS_ANNOTATION,
    PAUSED_ANNOTATION,
    PAUSED_REPLICAS_ANNOTATION,
    Pause,
    original_min_replicas,
    parse_pause,
    render_status,
    would_scale_message,
)
from autoscaler.ports import TargetStatus


def _obj(**annotations: str) -> dict[str, object]:
    return {"metadata": {"annotations": annotations}}


def test_pause_annotations_follow_keda() -> None:
    """paused=true holds; paused-replicas pins (and pauses alone); a bad count still pauses, without a pin."""
    assert parse_pause(_obj()) is None
    assert parse_pause(_obj(**{PAUSED_ANNOTATION: "false"})) is None
    assert parse_pause(_obj(**{PAUSED_ANNOTATION: "True"})) == Pause()
    assert parse_pause(_obj(**{PAUSED_REPLICAS_ANNOTATION: "2"})) == Pause(replicas=2)
    bad = parse_pause(_obj(**{PAUSED_REPLICAS_ANNOTATION: "two"}))
    assert bad is not None and bad.replicas is None and bad.problem and "'two'" in bad.problem
    assert parse_pause(_obj(**{PAUSED_REPLICAS_ANNOTATION: "-1"})) == Pause(
        problem=f"{PAUSED_REPLICAS_ANNOTATION}: '-1' is not a replica count; holding as is"
    )


def test_recorded_hpa_floor_is_read_only_when_valid() -> None:
    """Only a positive integer is a floor to restore."""
    assert original_min_replicas(_obj(**{ORIGINAL_MIN_REPLICAS_ANNOTATION: "3"})) == 3
    assert original_min_replicas(_obj(**{ORIGINAL_MIN_REPLICAS_ANNOTATION: "0"})) is None
    assert original_min_replicas(_obj(**{ORIGINAL_MIN_REPLICAS_ANNOTATION: "x"})) is None
    assert original_min_replicas(_obj()) is None


def test_status_json_and_would_scale_message() -> None:
    """The status is compact JSON with an RFC 3339 time; WouldScale only in dry-run with a change."""
    status = TargetStatus(mode="dry-run", time=0.0, current_replicas=1, current_placeholders=0, desired_replicas=3,
                          desired_placeholders=1, reason="PredictedLoad", placeholder_reason="PlaceholdersForForecast",
                          model="ets", forecast=412.345)  # fmt: skip
    doc = json.loads(render_status(status))
    assert doc == {
        "mode": "dry-run", "desiredReplicas": 3, "currentReplicas": 1, "desiredPlaceholders": 1,
        "currentPlaceholders": 0, "reason": "PredictedLoad", "placeholderReason": "PlaceholdersForForecast",
        "model": "ets", "forecast": 412.3, "lastUpdate": "1970-01-01T00:00:00Z",
    }  # fmt: skip
    assert would_scale_message(status) == (
        "Dry-run: would scale replicas 1 -> 3 (reason PredictedLoad), placeholders 0 -> 1 "
        "(reason PlaceholdersForForecast)"
    )
    same = TargetStatus(mode="dry-run", time=0.0, current_replicas=1, current_placeholders=0, desired_replicas=1,
                        desired_placeholders=0, reason="NoChange")  # fmt: skip
    assert would_scale_message(same) is None
    enforcing = TargetStatus(mode="enforce", time=0.0, current_replicas=1, current_placeholders=0, desired_replicas=3)
    assert would_scale_message(enforcing) is None
