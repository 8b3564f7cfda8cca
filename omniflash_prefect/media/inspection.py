"""Check a downloaded video against its request and make its previews, reading as little as can be.

PyAV (FFmpeg's libraries, bundled in its wheels) opens the container and reads the stream headers:
that gives duration, frame size, codec, frame rate and whether there is audio, without decoding.
The previews then seek to a few keyframes and decode one frame at each, so the cost depends on
the frame size, never on the length or the byte size of the file (a 1 GiB archive reads the same
few hundred kilobytes as a 1 MiB one).

A file FFmpeg cannot read is not an error here: it was paid for, so it is archived all the same,
marked ``unreadable`` with FFmpeg's reason.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Final

import av
import av.error
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image

from omniflash_prefect.core.media import MediaCheck, MediaFacts, judge, unreadable
from omniflash_prefect.core.requests import VideoRequest

#: The previews of a video, in the order a summary shows them.
PREVIEW_KINDS: Final = ("poster", "contact_sheet")

#: The poster's longer side, in pixels: big enough to recognise a scene in the run's summary.
POSTER_LONG_SIDE: Final = 480
#: Each contact-sheet tile's longer side; four tiles in a 2x2 grid make a sheet the poster's size.
TILE_LONG_SIDE: Final = 240
#: Frames in a contact sheet, spread evenly over the video.
CONTACT_SHEET_FRAMES: Final = 4
#: JPEG quality of the previews: small files (tens of KB) that still show the scene.
JPEG_QUALITY: Final = 70
#: The most the previews embedded in one run's summary may weigh, as ``data:`` URIs.
EMBED_BUDGET_BYTES: Final = 64 * 1024


@dataclass(frozen=True)
class Inspection:
    """What reading one video gave: the verdict and its previews as JPEG bytes, by kind."""

    check: MediaCheck
    previews: dict[str, bytes] = field(default_factory=dict)


def inspect_video(path: Path, request: VideoRequest | None) -> Inspection:
    """Read ``path``'s facts, judge them against ``request`` and make its previews.

    Never raises for what the file holds: an unreadable file gives an ``unreadable`` verdict and
    no previews; a readable file whose frames cannot be decoded keeps its verdict and has no
    previews. Blocking (FFmpeg's work): call it in a worker thread.
    """
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        return Inspection(unreadable(_reason(exc)))
    with container:
        if not container.streams.video:
            return Inspection(unreadable("the file has no video stream"))
        stream = container.streams.video[0]
        try:
            facts = read_facts(container, stream)
        except av.error.FFmpegError as exc:
            return Inspection(unreadable(_reason(exc)))
        check = judge(facts, request)
        try:
            frames = list(keyframes(container, stream, spread_times(facts.duration_seconds)))
        except av.error.FFmpegError:
            frames = []
    if not frames:
        return Inspection(check)
    return Inspection(check, make_previews(frames))


def read_facts(container: InputContainer, stream: VideoStream) -> MediaFacts:
    """The container's and the first video stream's headers, as facts (nothing decoded)."""
    width = stream.codec_context.width
    height = stream.codec_context.height
    if width <= 0 or height <= 0:
        raise av.error.InvalidDataError(0, "the video stream states no frame size")
    return MediaFacts(
        duration_seconds=_duration_seconds(container, stream),
        width=width,
        height=height,
        codec=stream.codec_context.name,
        frame_rate=_rate(stream.average_rate or stream.guessed_rate),
        has_audio=bool(container.streams.audio),
    )


def spread_times(duration_seconds: float | None, count: int = CONTACT_SHEET_FRAMES) -> list[float]:
    """``count`` moments in the middle of equal slices of the video (0 when its length is
    unknown): 1/8, 3/8, 5/8 and 7/8 of the way for four."""
    if not duration_seconds or duration_seconds <= 0:
        return [0.0]
    return [duration_seconds * (2 * index + 1) / (2 * count) for index in range(count)]


def keyframes(
    container: InputContainer, stream: VideoStream, seconds: Iterable[float]
) -> Iterable[VideoFrame]:
    """The keyframe at or before each moment: a seek, then one frame decoded, per moment."""
    base = stream.time_base or Fraction(1, 1_000_000)
    for moment in seconds:
        container.seek(int(moment / base), stream=stream, backward=True, any_frame=False)
        frame = next(container.decode(stream), None)
        if frame is not None:
            yield frame


def make_previews(frames: list[VideoFrame]) -> dict[str, bytes]:
    """A poster (the frame nearest a third of the way in) and a 2x2 contact sheet, as JPEGs."""
    poster_frame = frames[min(1, len(frames) - 1)]
    poster = _scaled(poster_frame, POSTER_LONG_SIDE)
    tiles = [_scaled(frame, TILE_LONG_SIDE) for frame in frames]
    return {"poster": _jpeg(poster), "contact_sheet": _jpeg(_grid(tiles))}


def data_uri(jpeg: bytes) -> str:
    """An image as a ``data:`` URI, which the Prefect UI shows inside markdown artifacts."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def within_embed_budget(
    previews: dict[str, bytes], budget: int = EMBED_BUDGET_BYTES
) -> dict[str, str]:
    """The previews' ``data:`` URIs that fit in ``budget`` bytes together, poster first."""
    chosen: dict[str, str] = {}
    spent = 0
    for kind in PREVIEW_KINDS:
        jpeg = previews.get(kind)
        if jpeg is None:
            continue
        uri = data_uri(jpeg)
        if spent + len(uri) <= budget:
            chosen[kind] = uri
            spent += len(uri)
    return chosen


def thumbnail(jpeg: bytes, long_side: int) -> bytes:
    """A smaller JPEG of ``jpeg`` (for galleries of many videos)."""
    with Image.open(io.BytesIO(jpeg)) as image:
        image.thumbnail((long_side, long_side))
        return _jpeg(image.convert("RGB"))


def _scaled(frame: VideoFrame, long_side: int) -> Image.Image:
    width, height = frame.width, frame.height
    scale = min(1.0, long_side / max(width, height))
    size = (max(2, round(width * scale)), max(2, round(height * scale)))
    image: Image.Image = frame.reformat(width=size[0], height=size[1], format="rgb24").to_image()  # type: ignore[no-untyped-call]
    return image


def _grid(tiles: list[Image.Image]) -> Image.Image:
    """Up to four tiles in two columns (tiles of one video share a size)."""
    tile_width, tile_height = tiles[0].size
    columns = min(2, len(tiles))
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (tile_width * columns, tile_height * rows))
    for index, tile in enumerate(tiles):
        sheet.paste(tile, ((index % columns) * tile_width, (index // columns) * tile_height))
    return sheet


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


def _duration_seconds(container: InputContainer, stream: VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return round(float(stream.duration * stream.time_base), 3)
    if container.duration is not None:
        return round(container.duration / av.time_base, 3)
    return None


def _rate(rate: Fraction | None) -> float | None:
    return round(float(rate), 3) if rate else None


def _reason(exc: BaseException) -> str:
    """FFmpeg's message without the local path (which means nothing beside the archive)."""
    message = getattr(exc, "strerror", None) or str(exc)
    return f"{type(exc).__name__}: {message}"
