"""The emulator's JSON API over real loopback HTTP: task lifecycle, auth, money and faults."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from typing import Any

import httpx
import pytest

from omniflash_prefect.emulator import (
    DEFAULT_SHAPE,
    EmulatorConfig,
    EmulatorServer,
    video_sha256,
    video_size,
)

from .helpers import (
    START,
    FakeClock,
    body,
    error_code,
    http_client,
    submit,
    task_data,
    top_level_boxes,
)

TASK_ID = re.compile(r"task_[0-9A-HJKMNP-TV-Z]{26}")


async def test_task_goes_pending_processing_completed_and_serves_a_valid_mp4(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A task is pending, then processing with rising progress, then completed with a real MP4."""
    task_id = await submit(client)
    assert TASK_ID.fullmatch(task_id)

    pending = await task_data(client, task_id)
    assert pending == {
        "id": task_id,
        "status": "pending",
        "progress": 0,
        "created": int(START),
        "estimated_time": 25,
        "cost": 0.24,
    }
    clock.advance(2.0)
    early = await task_data(client, task_id)
    clock.advance(5.0)
    late = await task_data(client, task_id)
    assert early["status"] == late["status"] == "processing"
    assert 1 <= early["progress"] < late["progress"] <= 99
    assert "result" not in late

    clock.advance(3.0)
    response = await client.get(f"/v1/tasks/{task_id}", params={"language": "ja"})
    done: dict[str, Any] = response.json()["data"]
    assert done["status"] == "completed"
    assert done["progress"] == 100
    assert done["completed"] == math.ceil(START + 10.0)
    assert done["actual_time"] == done["completed"] - done["created"]
    assert done["cost"] == 0.24
    (video,) = done["result"]["videos"]
    assert video["expires_at"] == int(clock.now + 86400)
    (url,) = video["url"]
    assert url.startswith(f"{emulator.base_url}/files/{task_id}.mp4?expires=")

    download = await client.get(url)
    assert download.status_code == 200
    assert download.headers["content-type"] == "video/mp4"
    assert download.headers["accept-ranges"] == "bytes"
    # A submit naming no duration, resolution or aspect ratio gets the default shape.
    assert int(download.headers["content-length"]) == video_size(task_id, shape=DEFAULT_SHAPE)
    digest = hashlib.sha256(download.content).hexdigest()
    assert (
        digest == video_sha256(task_id, shape=DEFAULT_SHAPE) == emulator.state.video_sha256(task_id)
    )
    kinds = [kind for kind, _ in top_level_boxes(download.content)]
    assert {"ftyp", "moov", "mdat", "free"} <= set(kinds)
    assert kinds[0] == "ftyp"
    assert kinds[-1] == "free"


async def test_task_completes_on_the_real_clock() -> None:
    """With the default clock, a 0.2 s job is seen completing by a short polling loop."""
    with EmulatorServer(EmulatorConfig(job_seconds=0.2)) as emu:
        async with http_client(emu.base_url, emu.api_key) as http:
            task_id = await submit(http)
            seen = [(await task_data(http, task_id))["status"]]
            for _ in range(100):
                if seen[-1] == "completed":
                    break
                await asyncio.sleep(0.02)
                seen.append((await task_data(http, task_id))["status"])
    assert seen[0] == "pending"
    assert seen[-1] == "completed"


async def test_estimated_time_is_pessimistic(
    emulator: EmulatorServer, client: httpx.AsyncClient
) -> None:
    """``estimated_time`` is ceil(2.5 x job time), at least 1 s, like the provider's 600 for 240."""
    for job_seconds, estimated in [(240.0, 600), (3.0, 8), (0.2, 1), (0.0, 1)]:
        emulator.config.job_seconds = job_seconds
        task_id = await submit(client)
        assert (await task_data(client, task_id))["estimated_time"] == estimated


async def test_task_ids_are_distinct(shared_client: httpx.AsyncClient) -> None:
    """Each accepted submit gets its own provider-shaped task id."""
    ids = {await submit(shared_client) for _ in range(5)}
    assert len(ids) == 5
    assert all(TASK_ID.fullmatch(task_id) for task_id in ids)


async def test_unknown_task_is_404(shared_client: httpx.AsyncClient) -> None:
    """Reading a task id that was never accepted answers 404 not_found."""
    response = await shared_client.get("/v1/tasks/task_01KS1H7ZYSJWH1N779S2FSHTKA")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"message": "task not found", "type": "not_found", "code": "not_found"}
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/videos/generations"),
        ("GET", "/v1/tasks/task_x"),
        ("GET", "/v1/balance"),
        ("GET", "/v1/user/balance"),
        ("POST", "/v1/uploads/images"),
    ],
)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-key", "Basic emulator-key", "Bearer", "emulator-key"]
)
async def test_api_refuses_a_missing_or_wrong_key(
    shared_emulator: EmulatorServer, method: str, path: str, authorization: str | None
) -> None:
    """Every API route answers 401 authentication_error without the exact bearer token."""
    attempts = shared_emulator.state.submission_attempts
    accepted = shared_emulator.state.submission_count
    headers = {} if authorization is None else {"Authorization": authorization}
    async with http_client(shared_emulator.base_url) as http:
        response = await http.request(method, path, json=body(), headers=headers)
    assert response.status_code == 401
    assert error_code(response) == "authentication_error"
    assert response.headers["www-authenticate"] == "Bearer"
    assert shared_emulator.state.submission_count == accepted
    if path == "/v1/videos/generations":
        assert shared_emulator.state.submission_attempts == attempts + 1


async def test_bearer_scheme_is_case_insensitive(shared_emulator: EmulatorServer) -> None:
    """``bearer <key>`` is accepted, as HTTP auth schemes are case-insensitive."""
    headers = {"Authorization": f"bearer {shared_emulator.api_key}"}
    async with http_client(shared_emulator.base_url) as http:
        response = await http.get("/v1/balance", headers=headers)
    assert response.status_code == 200


async def test_api_key_can_be_changed_while_running(
    emulator: EmulatorServer, client: httpx.AsyncClient
) -> None:
    """The config is live: after changing api_key the old token is refused and the new one works."""
    emulator.config.api_key = "rotated"
    assert emulator.api_key == "rotated"
    assert (await client.get("/v1/balance")).status_code == 401
    ok = await client.get("/v1/balance", headers={"Authorization": "Bearer rotated"})
    assert ok.status_code == 200


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe{}", b'{"model": "Omni-Flash-Ext",}'])
async def test_malformed_json_is_400(
    shared_emulator: EmulatorServer, shared_client: httpx.AsyncClient, raw: bytes
) -> None:
    """A body that is not JSON answers 400 invalid_request_error and creates nothing."""
    attempts = shared_emulator.state.submission_attempts
    accepted = shared_emulator.state.submission_count
    response = await shared_client.post(
        "/v1/videos/generations", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert error_code(response) == "invalid_request_error"
    assert shared_emulator.state.submission_count == accepted
    assert shared_emulator.state.submission_attempts == attempts + 1


async def test_balance_endpoints_report_credit_and_spending(
    emulator: EmulatorServer, client: httpx.AsyncClient
) -> None:
    """Both balance routes show the remaining and used credit, which a submit changes."""
    for path in ("/v1/balance", "/v1/user/balance"):
        assert (await client.get(path)).json() == {
            "success": True,
            "remain_balance": 100.0,
            "used_balance": 0.0,
            "unlimited_quota": False,
        }
    await submit(client, duration=10, resolution="1080p")
    for path in ("/v1/balance", "/v1/user/balance"):
        answer = (await client.get(path)).json()
        assert answer["remain_balance"] == 99.4
        assert answer["used_balance"] == 0.6
    assert emulator.state.used_balance() == 0.6


async def test_unlimited_balance_never_refuses(
    emulator: EmulatorServer, client: httpx.AsyncClient
) -> None:
    """An unlimited key reports remain_balance -1 and is never answered 402."""
    emulator.config.balance = 0.0
    emulator.config.unlimited_balance = True
    await submit(client, duration=10, resolution="4k")
    answer = (await client.get("/v1/balance")).json()
    assert answer == {
        "success": True,
        "remain_balance": -1,
        "used_balance": 1.2,
        "unlimited_quota": True,
    }


async def test_submit_beyond_the_balance_is_402(
    emulator: EmulatorServer, client: httpx.AsyncClient
) -> None:
    """Each submit reserves its price; one costing more than what remains answers 402."""
    emulator.config.balance = 0.5
    too_dear = await client.post(
        "/v1/videos/generations", json=body(duration=10, resolution="1080p")
    )
    assert too_dear.status_code == 402
    assert error_code(too_dear) == "payment_required"
    await submit(client)  # 0.24
    await submit(client)  # 0.24, 0.02 left
    refused = await client.post("/v1/videos/generations", json=body())
    assert refused.status_code == 402
    assert emulator.state.submission_count == 2
    assert emulator.state.submission_attempts == 4
    assert (await client.get("/v1/balance")).json()["remain_balance"] == 0.02


async def test_failed_task_is_refunded(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A failed task costs 0 and its reserved price becomes available again."""
    emulator.config.balance = 0.3
    emulator.config.task_failure_rate = 1.0
    task_id = await submit(client)
    assert (await task_data(client, task_id))["cost"] == 0.24
    assert (await client.post("/v1/videos/generations", json=body())).status_code == 402
    clock.advance(10.0)
    assert (await task_data(client, task_id))["cost"] == 0
    assert (await client.get("/v1/balance")).json()["remain_balance"] == 0.3
    await submit(client)


async def test_failure_rate_one_fails_every_task(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """With task_failure_rate 1.0 the task ends failed, with the provider's error shape."""
    emulator.config.task_failure_rate = 1.0
    task_id = await submit(client)
    clock.advance(5.0)
    assert (await task_data(client, task_id))["status"] == "processing"
    clock.advance(5.0)
    data = await task_data(client, task_id)
    assert data["status"] == "failed"
    assert data["progress"] == 100
    assert data["cost"] == 0
    assert data["error"] == {"message": "upstream generation timed out", "code": "task_failed"}
    assert "result" not in data
    assert data["actual_time"] == data["completed"] - data["created"]


async def test_failure_rate_is_a_fraction_from_the_seeded_rng(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A 0.5 failure rate fails some tasks and not others."""
    emulator.config.task_failure_rate = 0.5
    task_ids = [await submit(client) for _ in range(30)]
    clock.advance(10.0)
    statuses = {(await task_data(client, task_id))["status"] for task_id in task_ids}
    assert statuses == {"completed", "failed"}


async def test_rate_limit_without_retry_after(
    emulator: EmulatorServer, client: httpx.AsyncClient
) -> None:
    """rate_limit_rate 1.0 answers 429 rate_limit_error, with no Retry-After unless configured."""
    emulator.config.rate_limit_rate = 1.0
    response = await client.post("/v1/videos/generations", json=body())
    assert response.status_code == 429
    assert error_code(response) == "rate_limit_error"
    assert "retry-after" not in response.headers
    assert emulator.state.submission_count == 0


async def test_rate_limit_with_retry_after(
    emulator: EmulatorServer, client: httpx.AsyncClient
) -> None:
    """With retry_after_seconds set, every API route's 429 carries it rounded up."""
    emulator.config.rate_limit_rate = 1.0
    for seconds, header in [(2.5, "3"), (1.0, "1"), (0.0, "0")]:
        emulator.config.retry_after_seconds = seconds
        for response in (
            await client.post("/v1/videos/generations", json=body()),
            await client.get("/v1/tasks/task_x"),
            await client.get("/v1/balance"),
        ):
            assert response.status_code == 429
            assert response.headers["retry-after"] == header


async def test_rate_limit_is_a_fraction_of_calls(
    emulator: EmulatorServer, client: httpx.AsyncClient
) -> None:
    """A 0.5 rate limits some calls and lets others through, and can be switched off live."""
    emulator.config.rate_limit_rate = 0.5
    codes = {(await client.get("/v1/balance")).status_code for _ in range(30)}
    assert codes == {200, 429}
    emulator.config.rate_limit_rate = 0.0
    assert (await client.get("/v1/balance")).status_code == 200


async def test_server_error_is_a_gateway_html_502_and_creates_no_task(
    emulator: EmulatorServer, client: httpx.AsyncClient
) -> None:
    """server_error_rate 1.0 answers 502 with an HTML body; a refused submit records no task."""
    emulator.config.server_error_rate = 1.0
    for response in (
        await client.post("/v1/videos/generations", json=body()),
        await client.get("/v1/balance"),
    ):
        assert response.status_code == 502
        assert response.headers["content-type"].startswith("text/html")
        assert response.text == "<html><body><h1>502 Bad Gateway</h1></body></html>"
    assert emulator.state.submission_attempts == 1
    assert emulator.state.submission_count == 0
    assert emulator.state.snapshot()["tasks"] == {}


async def test_latency_delays_answers(emulator: EmulatorServer, client: httpx.AsyncClient) -> None:
    """latency_seconds delays every API answer by at least that long (real time)."""
    emulator.config.latency_seconds = 0.2
    started = time.perf_counter()
    response = await client.get("/v1/balance")
    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.2


async def test_submit_answer_delay_answers_late_a_task_already_paid_for(
    emulator: EmulatorServer, client: httpx.AsyncClient
) -> None:
    """submit_answer_delay_seconds holds the answer back after the task exists: a client that
    dies in that window has paid for a task whose id it never read."""
    emulator.config.submit_answer_delay_seconds = 1.0
    answer = asyncio.ensure_future(client.post("/v1/videos/generations", json=body()))
    accepted = await asyncio.to_thread(
        emulator.state.wait_until, lambda state: state.submission_count == 1, 10
    )
    assert accepted
    assert not answer.done()
    (task_id,) = emulator.state.snapshot()["tasks"]
    response = await answer
    assert response.json()["data"][0]["task_id"] == task_id


async def test_state_records_submissions_polls_and_downloads(
    emulator: EmulatorServer, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """The state (in process and at /_emulator/state) tracks submits, polls and downloads."""
    task_id = await submit(client, duration=4)
    clock.advance(5.0)
    await task_data(client, task_id)
    clock.advance(6.0)
    url = (await task_data(client, task_id))["result"]["videos"][0]["url"][0]
    assert (await client.get(url)).status_code == 200

    assert emulator.state.submissions == [body(duration=4)]
    assert emulator.state.submission_count == 1
    assert emulator.state.polls(task_id) == 2
    assert emulator.state.downloads(task_id) == 1
    # The server counts a download complete once its last chunk is handed over, which may be
    # just after the client has read it: wait for the count (bounded), do not race it.
    assert await asyncio.to_thread(
        emulator.state.wait_until, lambda state: state.task(task_id).completed_downloads == 1, 10
    )
    record = emulator.state.task(task_id)
    assert record.first_poll_at == START + 5.0
    assert record.completed_downloads == 1
    assert record.request == body(duration=4)
    with pytest.raises(KeyError):
        emulator.state.task("task_unknown")

    snapshot = (await client.get("/_emulator/state")).json()
    assert snapshot["submission_attempts"] == 1
    assert snapshot["submission_count"] == 1
    assert snapshot["submissions"] == [body(duration=4)]
    assert snapshot["used_balance"] == 0.16
    summary = snapshot["tasks"][task_id]
    assert summary["status"] == "completed"
    assert summary["polls"] == 2
    assert summary["first_poll_at"] == START + 5.0
    assert summary["downloads"] == 1
    assert summary["completed_downloads"] == 1
    assert summary["price"] == 0.16
    assert summary["shape"] == {"duration": 4, "resolution": "720p", "aspect_ratio": "16:9"}
    assert summary["video_fault"] is None


async def test_polls_are_counted_even_when_rate_limited(
    emulator: EmulatorServer, client: httpx.AsyncClient
) -> None:
    """A status read answered 429 still counts as a poll: the client did hit the provider."""
    task_id = await submit(client)
    emulator.config.rate_limit_rate = 1.0
    assert (await client.get(f"/v1/tasks/{task_id}")).status_code == 429
    assert emulator.state.polls(task_id) == 1
