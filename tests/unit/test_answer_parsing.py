"""Reading submit, status, balance and upload answers in every documented variant."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from omniflash_prefect import VideoTask
from omniflash_prefect.core.protocol import (
    decode_json,
    parse_balance_response,
    parse_submit_response,
    parse_task_response,
    parse_upload_response,
)
from omniflash_prefect.errors import (
    AuthenticationError,
    InvalidTaskIdError,
    PaymentRequiredError,
    UnexpectedResponseError,
)

TASK_ID = "task_01KS1H7ZYSJWH1N779S2FSHTKA"

COMPLETED: dict[str, Any] = {
    "code": 200,
    "data": {
        "id": TASK_ID,
        "status": "completed",
        "progress": 100,
        "created": 1779246294,
        "completed": 1779246534,
        "actual_time": 240,
        "estimated_time": 600,
        "cost": 0.4,
        "result": {
            "videos": [
                {"url": ["https://cdn.example.com/videos/abc.mp4"], "expires_at": 1779332760}
            ]
        },
    },
}


@pytest.mark.parametrize(
    "body",
    [
        {"code": 200, "data": [{"status": "submitted", "task_id": TASK_ID}]},
        {"code": 200, "data": {"task_id": TASK_ID, "status": "pending"}},
        {"code": 200, "data": {"id": TASK_ID, "status": "pending"}},
        {"data": [{"task_id": TASK_ID}]},
    ],
)
def test_task_id_is_read_from_each_documented_place(body: dict[str, Any]) -> None:
    """data[0].task_id, data.task_id and data.id all work."""
    assert parse_submit_response(body) == TASK_ID


@pytest.mark.parametrize(
    "body", [{"code": 200, "data": []}, {"code": 200, "data": {}}, {"code": 200}, [], "ok"]
)
def test_submit_answer_without_task_id_is_unexpected(body: Any) -> None:
    """No task id means we cannot tell what happened: a typed error, not a KeyError."""
    with pytest.raises(UnexpectedResponseError):
        parse_submit_response(body)


@pytest.mark.parametrize("task_id", ["../../etc/passwd", "a/b", "x" * 129, "", "id\x00", 42])
def test_unsafe_task_ids_from_the_server_are_refused(task_id: Any) -> None:
    """A task id that could escape a path is never returned."""
    with pytest.raises(InvalidTaskIdError):
        parse_submit_response({"code": 200, "data": [{"task_id": task_id}]})


def test_error_inside_an_http_200_envelope_maps_like_its_status() -> None:
    """``{"code": 402, ...}`` in an HTTP 200 is a payment error, not a success."""
    body = {"code": 402, "error": {"message": "insufficient balance", "type": "payment_required"}}
    with pytest.raises(PaymentRequiredError, match="insufficient balance"):
        parse_submit_response(body)
    with pytest.raises(AuthenticationError):
        parse_task_response({"code": 401, "message": "bad key"})


def test_completed_task_is_read_fully() -> None:
    """Every field of the documented completed answer lands in the model."""
    task = parse_task_response(COMPLETED)
    assert task.phase == "completed"
    assert task.is_terminal
    assert (task.progress, task.cost, task.actual_time, task.estimated_time) == (100, 0.4, 240, 600)
    assert task.video_url == "https://cdn.example.com/videos/abc.mp4"
    assert task.video_expires_at == 1779332760


def test_url_as_plain_string_is_accepted() -> None:
    """Older answers give the URL as a string rather than a list."""
    task = VideoTask.model_validate(
        {"id": TASK_ID, "status": "completed", "result": {"videos": [{"url": "https://c/v.mp4"}]}}
    )
    assert task.video_url == "https://c/v.mp4"
    assert task.video_expires_at is None


def test_failed_task_carries_the_api_reason() -> None:
    """The error code and message of a failed task are kept."""
    task = parse_task_response(
        {
            "code": 200,
            "data": {
                "id": TASK_ID,
                "status": "failed",
                "progress": 100,
                "cost": 0,
                "error": {"message": "content moderation rejection", "code": "task_failed"},
            },
        }
    )
    assert task.phase == "failed"
    assert task.error is not None
    assert (task.error.code, task.error.message) == ("task_failed", "content moderation rejection")


def test_minimal_running_task_has_every_optional_field_empty() -> None:
    """Only id and status are required."""
    task = VideoTask.model_validate({"id": TASK_ID, "status": "pending"})
    assert task.phase == "running"
    assert not task.is_terminal
    assert (task.progress, task.cost, task.video_url, task.error) == (None, None, None, None)


@pytest.mark.parametrize("status", ["queued", "WAITING", "", "in_review"])
def test_unknown_statuses_mean_still_running(status: str) -> None:
    """A status this package does not know is not terminal."""
    assert VideoTask.model_validate({"id": TASK_ID, "status": status}).phase == "running"


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        ("COMPLETED", "completed"),
        (" failed ", "failed"),
        ("cancelled", "cancelled"),
        ("canceled", "cancelled"),
        ("submitted", "running"),
        ("processing", "running"),
    ],
)
def test_known_statuses_in_any_case(status: str, phase: str) -> None:
    """Statuses are read case- and space-insensitively."""
    assert VideoTask.model_validate({"id": TASK_ID, "status": status}).phase == phase


def test_extra_fields_and_junk_numbers_are_tolerated() -> None:
    """Unknown fields are ignored; unreadable numbers become None instead of crashing a poll."""
    task = VideoTask.model_validate(
        {
            "id": TASK_ID,
            "status": "processing",
            "progress": "abc",
            "cost": "0.25",
            "estimated_time": None,
            "created": "1779246294.7",
            "new_field": {"x": 1},
            "error": "a plain string",
        }
    )
    assert (task.progress, task.cost, task.created) == (None, 0.25, 1779246294)
    assert task.error is not None
    assert task.error.message == "a plain string"


@pytest.mark.parametrize(("given", "read"), [(-5, 0), (150, 100), (42.7, 42), ("60", 60)])
def test_progress_is_clamped_to_0_100(given: Any, read: int) -> None:
    """Progress outside 0-100 is clamped."""
    assert (
        VideoTask.model_validate(
            {"id": TASK_ID, "status": "processing", "progress": given}
        ).progress
        == read
    )


def test_two_videos_take_the_first_url() -> None:
    """With several videos, the first with a URL is the video."""
    task = VideoTask.model_validate(
        {
            "id": TASK_ID,
            "status": "completed",
            "result": {
                "videos": [{"url": []}, {"url": ["https://c/1.mp4"]}, {"url": "https://c/2"}]
            },
        }
    )
    assert task.video_url == "https://c/1.mp4"
    assert len(task.videos) == 3


def test_completed_without_video_has_no_url() -> None:
    """A completed task with no video is readable; the caller decides what that means."""
    task = VideoTask.model_validate({"id": TASK_ID, "status": "completed", "result": {}})
    assert task.video_url is None


@pytest.mark.parametrize(
    "body",
    [
        {"code": 200},
        {"code": 200, "data": "nope"},
        {"code": 200, "data": {"status": "completed"}},
        {"code": 200, "data": {"id": "../x", "status": "completed"}},
        ["not", "an", "object"],
    ],
)
def test_wrong_shaped_status_answers_are_unexpected(body: Any) -> None:
    """Missing data, a missing id or an unsafe id are typed errors."""
    with pytest.raises(UnexpectedResponseError):
        parse_task_response(body)


def test_non_json_success_body_is_unexpected() -> None:
    """An HTML page with HTTP 200 is not parsed as anything."""
    with pytest.raises(UnexpectedResponseError, match="not JSON"):
        decode_json(httpx.Response(200, content=b"<html>hi</html>"))


def test_balance_limited_unlimited_and_failed() -> None:
    """remain_balance -1 means unlimited; success false is an error with its message."""
    limited = parse_balance_response(
        {"success": True, "remain_balance": 12.5, "used_balance": 3.2, "unlimited_quota": False}
    )
    assert (limited.remain_balance, limited.used_balance, limited.unlimited) == (12.5, 3.2, False)
    assert parse_balance_response({"success": True, "remain_balance": -1}).unlimited
    with pytest.raises(UnexpectedResponseError, match="key disabled"):
        parse_balance_response({"success": False, "message": "key disabled"})


def test_upload_answer_bare_or_wrapped() -> None:
    """The upload answer is read bare or inside data."""
    bare = {"url": "https://u/x.png", "filename": "x.png", "content_type": "image/png", "bytes": 9}
    assert parse_upload_response(bare).size_bytes == 9
    assert parse_upload_response({"code": 200, "data": bare}).url == "https://u/x.png"
    with pytest.raises(UnexpectedResponseError):
        parse_upload_response({"filename": "x.png"})


def test_a_task_dumped_to_json_reads_back_with_its_video_url() -> None:
    """A task stored as JSON (a persisted task result, a sidecar) reads back with its URL."""
    task = VideoTask.model_validate(
        {
            "id": "task_1",
            "status": "completed",
            "result": {"videos": [{"url": ["https://cdn.example.com/v.mp4"], "expires_at": 9}]},
        }
    )
    again = VideoTask.model_validate_json(task.model_dump_json())
    assert again.video_url == "https://cdn.example.com/v.mp4"
    assert again == task
