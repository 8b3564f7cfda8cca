"""The client against a hostile provider. Task ids from users and from the provider: a hostile one
is refused before it reaches a URL.

The scripted servers and answers are in :mod:`tests.support.hostile_answers`.
"""

from __future__ import annotations

from typing import Any

import pytest

from omniflash_prefect.errors import (
    InvalidTaskIdError,
    SubmissionOutcomeUnknownError,
    UnexpectedResponseError,
)
from tests.support.hostile_answers import (
    KEY,
    REQUEST,
    TASK_ID,
    answer_json,
    client_for,
    status,
)
from tests.support.hostile_server import HostileServer


async def test_hostile_task_ids_are_refused_before_any_request() -> None:
    """A task id that could escape a URL path never reaches the server."""
    async with (
        HostileServer(answer_json(status(status="pending"))) as server,
        client_for(server) as client,
    ):
        for task_id in ["../balance", "/v1/balance", "a/b", "x\x00", "x" * 129, ""]:
            with pytest.raises(InvalidTaskIdError):
                await client.get_task(task_id)
            with pytest.raises(InvalidTaskIdError):
                await client.wait(task_id, max_wait_seconds=1)
    assert server.exchanges == []


@pytest.mark.parametrize(
    "hostile_id", ["../../etc/passwd", "/abs", "a/b", "x\x00y", "x" * 129, "", 42, None, ["a"]]
)
async def test_a_status_answer_with_a_hostile_task_id_is_refused(hostile_id: Any) -> None:
    """A completed status whose id could reach a path or a storage key is an
    UnexpectedResponseError, never a task."""
    body = {"code": 200, "data": {"id": hostile_id, "status": "completed", "result": {}}}
    async with HostileServer(answer_json(body)) as server, client_for(server) as client:
        with pytest.raises(UnexpectedResponseError):
            await client.get_task(TASK_ID)


@pytest.mark.parametrize("hostile_id", ["../x", "/abs", "a/b", "x\x00", "x" * 129, "", 7])
async def test_a_submit_answer_with_a_hostile_task_id_is_not_taken(hostile_id: Any) -> None:
    """A submit answered with an unsafe task id: one POST, SubmissionOutcomeUnknownError whose
    cause is InvalidTaskIdError (the request may have been paid, so it is never resent)."""
    body = {"code": 200, "data": [{"task_id": hostile_id, "status": "submitted"}]}
    async with HostileServer(answer_json(body)) as server, client_for(server) as client:
        with pytest.raises(SubmissionOutcomeUnknownError) as info:
            await client.submit(REQUEST)
    assert isinstance(info.value.cause, InvalidTaskIdError)
    assert server.paths == ["/v1/videos/generations"]
    assert server.exchanges[0].headers["authorization"] == f"Bearer {KEY}"
