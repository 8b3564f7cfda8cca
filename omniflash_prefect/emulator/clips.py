"""The clip each request shape gets: a real H.264 MP4 of the asked duration and frame size.

What a client downloads must be a video a media check can read and judge: the frame size the
request asked for (short side from the resolution, long side from the aspect ratio), its
duration, and frames that show something, so a preview of any of them is meaningful. So each
distinct shape is drawn with Pillow (a background colour per resolution, a bar sweeping across
the frame over the clip's length, the time, the frame number and the shape in large text) and
encoded with PyAV's libx264.

Encoding costs from under a second (720p) to several (4k), so it happens once per shape: clips
are kept in memory (a few, least recently used first out) and on disk, in a cache directory that
processes and pytest-xdist workers share. A clip is encoded into a temporary file beside its
final name and renamed into place, so readers only ever see whole files; two processes racing to
encode the same shape both write the same bytes, and the last rename wins harmlessly.

The bytes depend on the shape alone: fixed encoder options, one encoder thread, bit-exact
colour conversion and no timestamps, so any process with the same PyAV build produces the same
file (the cache file's name carries :data:`ENCODER_VERSION` and PyAV's version for that reason).
Cheap by design: :data:`FRAME_RATE` frames per second, a keyframe every second (readers seek to
any second cheaply), the ultrafast preset and a high CRF.

This module computes frame sizes itself rather than importing the client's rules: the emulator
plays the provider and must not share the client's idea of them (a test checks both agree).
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

import av
from av.video.reformatter import Interpolation, VideoReformatter
from PIL import Image, ImageDraw, ImageFont

from .validation import DEFAULT_ASPECT_RATIO, DEFAULT_DURATION, DEFAULT_RESOLUTION

#: Bump when anything that changes a clip's bytes changes (drawing, options), so cached clips
#: of the old version are not served as if they were the new one.
ENCODER_VERSION: Final = 2
#: Frames per second: enough to see motion, few enough to encode a 10 s 4k clip in seconds.
FRAME_RATE: Final = 8
#: The frame's short side each resolution names.
SHORT_SIDES: Final = {"720p": 720, "1080p": 1080, "4k": 2160}
#: The longest frame side ever encoded (8K UHD). An absurd aspect ratio (``100:1`` at 4k asks
#: for 216000x2160) is cut to this: the delivered frame keeps the asked short side, so its
#: aspect ratio then differs from the request.
MAX_LONG_SIDE: Final = 7680
#: Environment variable naming the clip cache directory, instead of the default
#: ``$XDG_CACHE_HOME/omniflash-prefect/emulator-clips`` (``~/.cache`` without XDG_CACHE_HOME).
CACHE_DIR_ENV: Final = "OMNIFLASH_EMULATOR_CACHE_DIR"
#: How many clips one process keeps in memory (a 10 s 4k clip is a few MB).
CLIPS_IN_MEMORY: Final = 8

#: libx264 options: fast and small rather than pretty. One thread, so the output cannot depend
#: on how work is split between threads; a keyframe every second and no scene-cut keyframes,
#: so keyframes sit at the same place in every clip.
_X264_OPTIONS: Final = {
    "preset": "ultrafast",
    "crf": "40",
    "threads": "1",
    "x264-params": f"keyint={FRAME_RATE}:min-keyint={FRAME_RATE}:scenecut=0",
}
#: RGB to YUV 4:2:0 by swscale's bit-exact path, so the pixels handed to the encoder do not
#: depend on the CPU's vector units; nearest-neighbour chroma is the cheapest and enough for
#: flat colours and large text.
_CONVERSION: Final = Interpolation.POINT | Interpolation.BITEXACT
_RATIO = re.compile(r"([1-9][0-9]*):([1-9][0-9]*)")
#: Background colour by short side, so clips of different resolutions look different at once.
_BACKGROUNDS: Final = {720: (28, 52, 94), 1080: (22, 84, 60), 2160: (84, 36, 96)}
_BAR_COLOUR: Final = (240, 190, 40)
_TEXT_COLOUR: Final = (255, 255, 255)


def requested_frame_size(resolution: str, aspect_ratio: str) -> tuple[int, int]:
    """The width and height a request asks for: the short side from the resolution, the long
    side from the aspect ratio, rounded to an even number of pixels (H.264 in 4:2:0 needs it).

    ``requested_frame_size("1080p", "9:16") == (1080, 1920)``; no cap applies here.
    """
    short = SHORT_SIDES[resolution.lower()]
    match = _RATIO.fullmatch(aspect_ratio)
    if match is None:
        raise ValueError(f"aspect ratio must be 'W:H' with positive integers, got {aspect_ratio!r}")
    ratio_width, ratio_height = int(match[1]), int(match[2])
    long_side = 2 * round(
        short * max(ratio_width, ratio_height) / min(ratio_width, ratio_height) / 2
    )
    return (long_side, short) if ratio_width >= ratio_height else (short, long_side)


class ClipFormat(NamedTuple):
    """What is actually encoded: the frame size and the whole seconds of a clip."""

    width: int
    height: int
    seconds: int

    @property
    def label(self) -> str:
        """``1080x1920 · 6 s``: how a clip names itself, in its frames too."""
        return f"{self.width}x{self.height} \N{MIDDLE DOT} {self.seconds} s"


@dataclass(frozen=True)
class VideoShape:
    """What a submit asks a video to be: its duration in seconds, its resolution (``720p``,
    ``1080p`` or ``4k``, stored lower-case) and its aspect ratio (``W:H``).

    The default is what a submit that names none of them gets: 6 s, 720p, 16:9.
    """

    duration: int = DEFAULT_DURATION
    resolution: str = DEFAULT_RESOLUTION
    aspect_ratio: str = DEFAULT_ASPECT_RATIO

    def __post_init__(self) -> None:
        object.__setattr__(self, "resolution", self.resolution.lower())
        if self.duration < 1:
            raise ValueError(f"duration must be at least 1 s, got {self.duration}")
        if self.resolution not in SHORT_SIDES:
            raise ValueError(f"resolution must be one of {', '.join(SHORT_SIDES)}")
        requested_frame_size(self.resolution, self.aspect_ratio)  # refuses a malformed ratio

    @property
    def requested_frame_size(self) -> tuple[int, int]:
        """The frame size asked for, uncapped."""
        return requested_frame_size(self.resolution, self.aspect_ratio)

    @property
    def frame_size(self) -> tuple[int, int]:
        """The frame size delivered: as asked, with the long side cut to :data:`MAX_LONG_SIDE`."""
        width, height = self.requested_frame_size
        return min(width, MAX_LONG_SIDE), min(height, MAX_LONG_SIDE)

    @property
    def capped(self) -> bool:
        """True when the delivered frame is smaller than asked (an absurd aspect ratio)."""
        return self.frame_size != self.requested_frame_size

    @property
    def clip_format(self) -> ClipFormat:
        """What is encoded for this shape; shapes with the same frame size share one clip."""
        width, height = self.frame_size
        return ClipFormat(width, height, self.duration)


class _Painter:
    """Draws the frames of one clip: its background and fonts are made once, for all of them.

    Not shared between clips (nor threads): a FreeType face must not be used by two threads at
    once, and clips of different shapes may be encoded at the same time.
    """

    def __init__(self, clip: ClipFormat) -> None:
        self.clip = clip
        short = min(clip.width, clip.height)
        colour = _BACKGROUNDS.get(short, (60, 60, 60))
        self.background = Image.new("RGB", (clip.width, clip.height), colour)
        self.large = ImageFont.load_default(size=short // 5)
        self.small = ImageFont.load_default(size=short // 14)

    def frame(self, index: int) -> Image.Image:
        """Frame ``index``: a bar at its share of the clip's length across the frame, then over
        it the time (``00:03.5``) in large type, the frame number and the shape."""
        clip = self.clip
        image = self.background.copy()
        draw = ImageDraw.Draw(image)
        short = min(clip.width, clip.height)
        bar = max(2, short // 24)
        left = round(index / max(1, clip.seconds * FRAME_RATE - 1) * (clip.width - bar))
        draw.rectangle((left, 0, left + bar - 1, clip.height - 1), fill=_BAR_COLOUR)
        minutes, tenths = divmod(index * 10 // FRAME_RATE, 600)
        lines = [
            (f"{minutes:02d}:{tenths // 10:02d}.{tenths % 10}", self.large, 0, "md"),
            (f"frame {index}", self.small, short // 20, "ma"),
            (
                f"{clip.label} \N{MIDDLE DOT} {FRAME_RATE} fps",
                self.small,
                short // 20 + short // 12,
                "ma",
            ),
        ]
        for text, font, below_middle, anchor in lines:
            where = (clip.width / 2, clip.height / 2 + below_middle)
            draw.text(where, text, font=font, fill=_TEXT_COLOUR, anchor=anchor)
        return image


def draw_frame(clip: ClipFormat, index: int) -> Image.Image:
    """Frame ``index`` of the clip, as it is encoded (to look at one without encoding)."""
    return _Painter(clip).frame(index)


_encodes = 0
_encodes_lock = threading.Lock()


def encodes_in_this_process() -> int:
    """How many clips this process has encoded: what a cache hit leaves unchanged."""
    with _encodes_lock:
        return _encodes


def encode_clip(clip: ClipFormat, path: Path) -> None:
    """Encode the clip into ``path`` (a real file: faststart rewrites it to put the index first)."""
    global _encodes
    with _encodes_lock:
        _encodes += 1
    painter = _Painter(clip)
    to_yuv = VideoReformatter()
    with av.open(
        str(path), mode="w", format="mp4", container_options={"movflags": "+faststart"}
    ) as container:
        stream = container.add_stream("libx264", rate=FRAME_RATE, options=dict(_X264_OPTIONS))
        stream.width, stream.height, stream.pix_fmt = clip.width, clip.height, "yuv420p"
        stream.codec_context.thread_count = 1
        for index in range(clip.seconds * FRAME_RATE):
            image = painter.frame(index)
            rgb = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]  # PyAV's stub
            frame = to_yuv.reformat(rgb, format="yuv420p", interpolation=_CONVERSION)
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def clip_cache_dir() -> Path:
    """Where encoded clips are kept: ``$OMNIFLASH_EMULATOR_CACHE_DIR`` if set, else under the
    user's cache directory. Read on every call, so a test can point it elsewhere."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "omniflash-prefect" / "emulator-clips"


def clip_file_name(clip: ClipFormat) -> str:
    """The cache file of a clip: its format, the encoder version and the PyAV build."""
    return (
        f"clip-v{ENCODER_VERSION}-av{av.__version__}-{clip.width}x{clip.height}-{clip.seconds}s.mp4"
    )


def load_or_encode_clip(clip: ClipFormat, directory: Path) -> bytes:
    """The clip's bytes from ``directory``, encoded there first if missing.

    A directory that cannot be written (read-only, not a directory) is no reason to fail: the
    clip is then encoded in a scratch directory and only returned.
    """
    target = directory / clip_file_name(clip)
    try:
        return target.read_bytes()
    except FileNotFoundError:
        pass
    except OSError:
        return _encode_without_cache(clip)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".encoding-", suffix=".mp4")
    except OSError:
        return _encode_without_cache(clip)
    os.close(handle)
    try:
        encode_clip(clip, Path(temporary))
        data = Path(temporary).read_bytes()
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a cache is for every process
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return data


def _encode_without_cache(clip: ClipFormat) -> bytes:
    with tempfile.TemporaryDirectory(prefix="omniflash-clip-") as scratch:
        path = Path(scratch) / clip_file_name(clip)
        encode_clip(clip, path)
        return path.read_bytes()


_memory: OrderedDict[ClipFormat, bytes] = OrderedDict()
_memory_lock = threading.Lock()
_clip_locks: dict[ClipFormat, threading.Lock] = {}


def clip_bytes(shape: VideoShape) -> bytes:
    """The encoded clip of a shape: from memory, else from the cache directory, else encoded.

    One lock per clip format, so threads asking for the same new shape encode it once while
    other shapes are served meanwhile.
    """
    clip = shape.clip_format
    with _memory_lock:
        lock = _clip_locks.setdefault(clip, threading.Lock())
    with lock:
        with _memory_lock:
            if clip in _memory:
                _memory.move_to_end(clip)
                return _memory[clip]
        data = load_or_encode_clip(clip, clip_cache_dir())
        with _memory_lock:
            _memory[clip] = data
            while len(_memory) > CLIPS_IN_MEMORY:
                _memory.popitem(last=False)
        return data
