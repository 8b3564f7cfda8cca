"""What checking and previewing a video costs, by frame size, keyframe spacing and file size.

For 4 s 720p, 10 s 1080p and 10 s 4k (16:9), two H.264 files are made once with PyAV:

* ``emulator``: the emulator's own clip of that shape (8 fps, a keyframe every second);
* ``24fps-gop2s``: the same frames at 24 fps with a keyframe every 2 s, closer to what a
  generation service delivers (more frames between keyframes; the reader still decodes one
  frame per preview moment, the keyframe).

Each is measured as is and padded to ``--pad-mib`` MiB with a trailing ``free`` box (as the
emulator's large videos are), to show the cost does not grow with the file. Per file, the median
and the best of ``--repeat`` runs of, in this process:

* ``probe``: open the container and read the stream headers (what the verdict needs);
* ``check_and_previews``: :func:`inspect_video` as the archive calls it (probe, verdict, four
  keyframes decoded, poster and contact sheet scaled and encoded as JPEG).

Also the previews' sizes, and this process's peak RSS. Prints one JSON object.

    uv run --frozen python benchmarks/media_check.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
from av.video.reformatter import VideoReformatter
from benchlib import BENCHMARKS  # noqa: F401 - puts the checkout on sys.path

from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.emulator.clips import VideoShape, clip_bytes, draw_frame
from omniflash_prefect.media.inspection import inspect_video, read_facts, within_embed_budget

SHAPES = [(4, "720p"), (10, "1080p"), (10, "4k")]
MIB = 1024 * 1024


def encode_like_a_provider(
    shape: VideoShape, path: Path, fps: int = 24, gop_seconds: int = 2
) -> None:
    """The emulator's frames at ``fps`` with a keyframe every ``gop_seconds`` (ultrafast x264)."""
    clip = shape.clip_format
    to_yuv = VideoReformatter()
    with av.open(
        str(path), mode="w", format="mp4", container_options={"movflags": "+faststart"}
    ) as out:
        stream = out.add_stream(
            "libx264",
            rate=fps,
            options={"preset": "ultrafast", "crf": "30", "g": str(fps * gop_seconds)},
        )
        stream.width, stream.height, stream.pix_fmt = clip.width, clip.height, "yuv420p"
        # Drawing every frame at 4k would dominate; the content changes once per emulator frame.
        drawn: dict[int, Any] = {}
        for index in range(clip.seconds * fps):
            source = index * 8 // fps
            if source not in drawn:
                drawn.clear()
                rgb = av.VideoFrame.from_image(draw_frame(clip, source))  # type: ignore[no-untyped-call]
                drawn[source] = to_yuv.reformat(rgb, format="yuv420p")
            frame = drawn[source]
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def padded(source: Path, target: Path, total_bytes: int) -> Path:
    """``source`` followed by one ``free`` box up to ``total_bytes`` (sparse: nothing written)."""
    data = source.read_bytes()
    box = total_bytes - len(data)
    header = (1).to_bytes(4, "big") + b"free" + box.to_bytes(8, "big")  # 64-bit box size
    with target.open("wb") as handle:
        handle.write(data + header)
        handle.truncate(total_bytes)
    return target


def timed(work: Callable[[], object], repeat: int) -> dict[str, float]:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    return {"median_s": round(statistics.median(seconds), 4), "best_s": round(min(seconds), 4)}


def probe(path: Path) -> None:
    with av.open(str(path)) as container:
        read_facts(container, container.streams.video[0])


def measure(path: Path, request: VideoRequest, repeat: int) -> dict[str, Any]:
    inspection = inspect_video(path, request)  # warm up, and what it gives
    return {
        "file_mib": round(path.stat().st_size / MIB, 2),
        "verdict": inspection.check.verdict,
        "probe": timed(lambda: probe(path), repeat),
        "check_and_previews": timed(lambda: inspect_video(path, request), repeat),
        "preview_bytes": {kind: len(jpeg) for kind, jpeg in inspection.previews.items()},
        "embedded_bytes": sum(
            len(uri) for uri in within_embed_budget(inspection.previews).values()
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pad-mib", type=int, default=1024)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="omniflash-media-bench-") as scratch:
        folder = Path(scratch)
        for seconds, resolution in SHAPES:
            shape = VideoShape(duration=seconds, resolution=resolution, aspect_ratio="16:9")
            request = VideoRequest(prompt="bench", duration=seconds, resolution=resolution)
            name = f"{seconds}s-{resolution}"
            emulator = folder / f"{name}-emulator.mp4"
            emulator.write_bytes(clip_bytes(shape))
            provider = folder / f"{name}-24fps.mp4"
            encode_like_a_provider(shape, provider)
            for kind, path in (("emulator", emulator), ("24fps-gop2s", provider)):
                results[f"{name} {kind}"] = measure(path, request, args.repeat)
                big = padded(path, folder / f"{path.stem}-padded.mp4", args.pad_mib * MIB)
                results[f"{name} {kind} padded"] = measure(big, request, args.repeat)
                big.unlink()
    report = {
        "python": platform.python_version(),
        "av": av.__version__,
        "cpus": len(os.sched_getaffinity(0)),
        "repeat": args.repeat,
        "results": results,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
