"""The emulated provider as a Starlette app: the documented endpoints plus a state endpoint.

Every API route runs the same gate, in the provider's order: bearer auth (401), the configured
latency, then injected 429 / 502 answers, and only then the route's own work. Video and upload
URLs are absolute, built from the base URL the client used, so they work whatever port the
server got. Time (task progress, URL expiry) comes from the state's injectable clock.

URL shapes:

* video: ``{base}/files/{task_id}.mp4?expires={unix_seconds}&sig={hmac}`` (no auth, like a CDN
  signed URL);
* uploaded image: ``{base}/uploads/img_{ulid}.{ext}`` (no auth);
* ``GET {base}/_emulator/state``: ``EmulatorState.snapshot()`` for out-of-process tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .clips import VideoShape
from .config import EmulatorConfig
from .downloads import (
    RangeNotSatisfiableError,
    VideoResponse,
    hide_download_cut_logs,
    parse_byte_range,
    s3_error,
)
from .errors import ApiError
from .state import EmulatorState, InsufficientBalanceError, TaskRecord
from .uploads import MAX_IMAGE_BYTES, read_image_upload
from .validation import validate_submit
from .videos import VideoFault, min_video_size

BAD_GATEWAY_HTML = "<html><body><h1>502 Bad Gateway</h1></body></html>"
#: Room for multipart boundaries and part headers on top of the image size limit.
_MULTIPART_OVERHEAD = 64 * 1024


def _error(error: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


async def _read_capped(request: Request, cap: int) -> bytes | None:
    """The whole body, or None if it exceeds ``cap`` (read to its end either way).

    Always draining the body means an early refusal never leaves the client blocked writing a
    large upload into a connection nobody reads.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= cap:
            chunks.append(chunk)
        else:
            chunks.clear()
    return None if size > cap else b"".join(chunks)


async def _hold_answer(request: Request, seconds: float) -> None:
    """Wait ``seconds`` before answering, or until the client goes away (its request body has
    been read, so the next message is its disconnect)."""
    if seconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while (await request.receive())["type"] != "http.disconnect":
                pass


class _Api:
    """The route handlers, sharing one config (read live) and one state."""

    def __init__(self, config: EmulatorConfig, state: EmulatorState) -> None:
        self.config = config
        self.state = state

    async def _admit(self, request: Request) -> Response | None:
        """401 for a wrong or missing bearer token; otherwise wait the configured latency."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expected = self.config.api_key.encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            error = ApiError(
                401, "authentication_error", "invalid or missing API key (Authorization: Bearer)"
            )
            return _error(error, {"WWW-Authenticate": "Bearer"})
        if self.config.latency_seconds > 0:
            await asyncio.sleep(self.config.latency_seconds)
        return None

    def _fault(self) -> Response | None:
        """An injected 429 or 502 answer, drawn from the seeded RNG, or None."""
        if self.state.chance(self.config.rate_limit_rate):
            retry_after = self.config.retry_after_seconds
            headers = None if retry_after is None else {"Retry-After": str(math.ceil(retry_after))}
            error = ApiError(
                429, "rate_limit_error", "rate limit reached, lower concurrency or retry later"
            )
            return _error(error, headers)
        if self.state.chance(self.config.server_error_rate):
            return Response(BAD_GATEWAY_HTML, status_code=502, media_type="text/html")
        return None

    async def submit(self, request: Request) -> Response:
        """``POST /v1/videos/generations``: validate, reserve the price, create a task."""
        self.state.count_submission_attempt()
        refusal = await self._admit(request) or self._fault()
        if refusal is not None:
            return refusal
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            return _error(ApiError(400, "invalid_request_error", f"malformed JSON body: {exc}"))
        try:
            valid = validate_submit(body)
            shape = VideoShape(valid.duration, valid.resolution, valid.aspect_ratio)
            video_fault = self._video_fault()
            size_bytes = self.config.video_size_bytes
            if size_bytes is not None and video_fault is None:
                await self._check_video_fits(shape, size_bytes)
            record = self.state.create_task(
                body,
                price=valid.price,
                balance=None if self.config.unlimited_balance else self.config.balance,
                job_seconds=self.config.job_seconds,
                failure_rate=self.config.task_failure_rate,
                video_size_bytes=size_bytes,
                shape=shape,
                video_fault=video_fault,
            )
        except ApiError as exc:
            return _error(exc)
        except InsufficientBalanceError as exc:
            message = (
                f"insufficient balance: this video costs {exc.price}, "
                f"{exc.remaining} remains; top up, then retry"
            )
            return _error(ApiError(402, "payment_required", message))
        await _hold_answer(request, self.config.submit_answer_delay_seconds)
        return JSONResponse(
            {"code": 200, "data": [{"status": "submitted", "task_id": record.task_id}]}
        )

    def _video_fault(self) -> VideoFault | None:
        """The media fault a task submitted now gets; an unreadable file has no shape to get
        wrong, so that fault wins when both are on."""
        if self.config.serve_unreadable_mp4:
            return "unreadable_mp4"
        if self.config.serve_wrong_shape:
            return "wrong_shape"
        return None

    @staticmethod
    async def _check_video_fits(shape: VideoShape, size_bytes: int) -> None:
        """Refuse (400, before anything is charged) a submit whose clip is too large for the
        configured ``video_size_bytes``: the size is exact, so it cannot be met by padding.

        Knowing the clip's size means encoding it (once per shape), in a thread so the server
        goes on answering meanwhile.
        """
        needed = await asyncio.to_thread(min_video_size, shape)
        if size_bytes < needed:
            raise ApiError(
                400,
                "invalid_request_error",
                f"emulator: video_size_bytes is {size_bytes}, but a "
                f"{shape.clip_format.label} video needs at least {needed} bytes; raise it or "
                "leave it unset",
            )

    async def task(self, request: Request) -> Response:
        """``GET /v1/tasks/{task_id}``: the task as of now; every read is counted as a poll."""
        refusal = await self._admit(request)
        if refusal is not None:
            return refusal
        task_id = request.path_params["task_id"]
        self.state.record_poll(task_id)
        refusal = self._fault()
        if refusal is not None:
            return refusal
        record = self.state.find(task_id)
        if record is None:
            return _error(ApiError(404, "not_found", "task not found"))
        return JSONResponse({"code": 200, "data": self._task_data(request, record)})

    def _task_data(self, request: Request, record: TaskRecord) -> dict[str, Any]:
        now = self.state.clock()
        status = record.status_at(now)
        created = int(record.created_at)
        data: dict[str, Any] = {
            "id": record.task_id,
            "status": status,
            "progress": record.progress_at(now),
            "created": created,
            "estimated_time": record.estimated_time,
            "cost": record.cost_at(now),
        }
        if status in {"completed", "failed"}:
            completed = math.ceil(record.finishes_at)
            data["completed"] = completed
            data["actual_time"] = completed - created
        if status == "completed":
            expires = math.floor(now + self.config.url_ttl_seconds)
            url = request.url_for("video", task_id=record.task_id).include_query_params(
                expires=expires, sig=self.state.sign(record.task_id, expires)
            )
            data["result"] = {"videos": [{"url": [str(url)], "expires_at": expires}]}
        if status == "failed":
            data["error"] = {"message": "upstream generation timed out", "code": "task_failed"}
        return data

    async def balance(self, request: Request) -> Response:
        """``GET /v1/balance`` and ``/v1/user/balance``: credit left and spent."""
        refusal = await self._admit(request) or self._fault()
        if refusal is not None:
            return refusal
        used = self.state.used_balance()
        unlimited = self.config.unlimited_balance
        remain = -1 if unlimited else round(self.config.balance - used, 4)
        return JSONResponse(
            {
                "success": True,
                "remain_balance": remain,
                "used_balance": used,
                "unlimited_quota": unlimited,
            }
        )

    async def upload(self, request: Request) -> Response:
        """``POST /v1/uploads/images``: store a JPEG/PNG/WebP/GIF and answer its URL."""
        body = await _read_capped(request, MAX_IMAGE_BYTES + _MULTIPART_OVERHEAD)
        refusal = await self._admit(request) or self._fault()
        if refusal is not None:
            return refusal
        try:
            if body is None:
                raise ApiError(
                    413, "invalid_request_error", f"upload is larger than {MAX_IMAGE_BYTES} bytes"
                )
            image = read_image_upload(request.headers.get("content-type", ""), body)
        except ApiError as exc:
            return _error(exc)
        upload = self.state.add_upload(
            image.filename, image.content_type, image.extension, image.data
        )
        return JSONResponse(
            {
                "url": str(request.url_for("uploaded_file", name=upload.name)),
                "filename": upload.filename,
                "content_type": upload.content_type,
                "bytes": len(upload.data),
                "created_at": int(upload.created_at),
            }
        )

    async def uploaded_file(self, request: Request) -> Response:
        """``GET /uploads/{name}``: an uploaded image, served back as stored."""
        upload = self.state.upload(request.path_params["name"])
        if upload is None:
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return Response(upload.data, media_type=upload.content_type)

    async def video(self, request: Request) -> Response:
        """``GET /files/{task_id}.mp4``: the video behind a signed, expiring URL."""
        task_id = request.path_params["task_id"]
        record = self.state.find(task_id)
        now = self.state.clock()
        if record is None or record.status_at(now) != "completed":
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        expires = request.query_params.get("expires", "")
        if not self.state.signature_ok(task_id, expires, request.query_params.get("sig", "")):
            return s3_error(403, "AccessDenied", "Signature does not match")
        if now >= int(expires):
            return s3_error(403, "AccessDenied", "Request has expired")
        layout = await asyncio.to_thread(record.video_layout)  # may encode the clip
        total = layout.total
        asked = None if self.config.ignore_range else request.headers.get("range")
        try:
            byte_range = parse_byte_range(asked, total)
        except RangeNotSatisfiableError:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{total}"})
        counted = request.method != "HEAD"
        attempt = self.state.record_download_attempt(task_id) if counted else 0
        cut = counted and (
            attempt <= self.config.drop_first_downloads
            or self.state.chance(self.config.download_drop_rate)
        )
        return VideoResponse(
            layout,
            byte_range or (0, total),
            partial=byte_range is not None,
            cut=cut,
            stall_seconds=self.config.download_stall_seconds,
            not_mp4=self.config.serve_non_mp4,
            on_complete=lambda: self.state.record_download_complete(task_id),
        )

    async def snapshot(self, request: Request) -> Response:
        """``GET /_emulator/state``: the state summary, for tests running out of process."""
        del request
        return JSONResponse(self.state.snapshot())


def create_app(
    config: EmulatorConfig | None = None, state: EmulatorState | None = None
) -> Starlette:
    """Build the emulator app around a (live, mutable) config and a state.

    Without ``state``, a fresh one is seeded from ``config.seed`` and uses the real clock; pass
    ``EmulatorState(seed=..., clock=fake)`` to control time.
    """
    config = config if config is not None else EmulatorConfig()
    state = state if state is not None else EmulatorState(seed=config.seed)
    hide_download_cut_logs()
    api = _Api(config, state)
    return Starlette(
        routes=[
            Route("/v1/videos/generations", api.submit, methods=["POST"]),
            Route("/v1/tasks/{task_id}", api.task, methods=["GET"]),
            Route("/v1/balance", api.balance, methods=["GET"]),
            Route("/v1/user/balance", api.balance, methods=["GET"]),
            Route("/v1/uploads/images", api.upload, methods=["POST"]),
            Route("/uploads/{name}", api.uploaded_file, methods=["GET"], name="uploaded_file"),
            Route("/files/{task_id}.mp4", api.video, methods=["GET"], name="video"),
            Route("/_emulator/state", api.snapshot, methods=["GET"]),
        ]
    )
