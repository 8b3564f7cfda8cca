"""Every rule of the submit endpoint, checked locally before anything is sent."""

from __future__ import annotations

import base64
import inspect
import json
from typing import Any

import pytest

from omniflash_prefect import VideoRequest
from omniflash_prefect.core.requests import check_request_fields
from omniflash_prefect.errors import InvalidVideoRequestError
from omniflash_prefect.video.flows import agenerate_video

PNG_URI = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def refusal(**fields: Any) -> InvalidVideoRequestError:
    with pytest.raises(InvalidVideoRequestError) as info:
        VideoRequest(**fields)
    return info.value


def test_defaults_are_sent_explicitly() -> None:
    """A prompt alone becomes a full body with the documented defaults, so it is deterministic."""
    assert VideoRequest(prompt="a fox").to_api_body() == {
        "model": "Omni-Flash-Ext",
        "prompt": "a fox",
        "duration": 6,
        "resolution": "720p",
        "aspect_ratio": "16:9",
    }


@pytest.mark.parametrize("duration", [4, 6, 8, 10])
def test_every_documented_duration_is_accepted(duration: int) -> None:
    """4, 6, 8 and 10 seconds pass."""
    assert VideoRequest(prompt="x", duration=duration).duration == duration


@pytest.mark.parametrize("duration", [5, 7, 0, -6, 12, True, False, 6.0, 6.5, "6", None])
def test_other_durations_are_refused_as_invalid_duration(duration: object) -> None:
    """5, 7, bools, floats and strings are refused with the API's own code."""
    error = refusal(prompt="x", duration=duration)
    assert (error.code, error.field, error.value) == ("invalid_duration", "duration", duration)
    assert "4, 6, 8 or 10" in str(error)


@pytest.mark.parametrize(
    ("given", "sent"), [("720p", "720p"), ("1080P", "1080p"), ("4K", "4k"), ("4k", "4k")]
)
def test_resolution_is_case_insensitive_and_sent_lower_case(given: str, sent: str) -> None:
    """Any case is accepted; the body carries lower case."""
    assert VideoRequest(prompt="x", resolution=given).to_api_body()["resolution"] == sent


@pytest.mark.parametrize("resolution", ["480p", "2k", "", "720", 720, None])
def test_other_resolutions_are_refused(resolution: object) -> None:
    """Anything but 720p/1080p/4k is invalid_resolution, naming what is allowed."""
    error = refusal(prompt="x", resolution=resolution)
    assert (error.code, error.field) == ("invalid_resolution", "resolution")
    assert error.allowed is not None
    assert "1080p" in error.allowed


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t", None, 42])
def test_empty_or_missing_prompt_is_refused(prompt: object) -> None:
    """Whitespace-only counts as empty."""
    error = refusal(prompt=prompt)
    assert (error.code, error.field) == ("invalid_request_error", "prompt")


def test_missing_prompt_is_refused() -> None:
    """The prompt is required."""
    with pytest.raises(InvalidVideoRequestError) as info:
        VideoRequest.model_validate({})
    assert info.value.field == "prompt"


def test_model_is_fixed() -> None:
    """Another model name is refused; the right one is accepted."""
    assert VideoRequest(prompt="x", model="Omni-Flash-Ext").model == "Omni-Flash-Ext"
    error = refusal(prompt="x", model="other-model")
    assert (error.code, error.field) == ("invalid_request_error", "model")


@pytest.mark.parametrize("ratio", ["16:9", "9:16", "1:1", "21:9", "4:3"])
def test_aspect_ratios_of_positive_integers_are_accepted(ratio: str) -> None:
    """W:H with positive integers passes."""
    assert VideoRequest(prompt="x", aspect_ratio=ratio).aspect_ratio == ratio


@pytest.mark.parametrize(
    "ratio", ["16x9", "0:9", "16:0", "-16:9", "16:9:1", "1.5:1", "016:9", " 16:9", "", 169]
)
def test_malformed_aspect_ratios_are_refused(ratio: object) -> None:
    """Anything that is not W:H with positive integers is refused."""
    error = refusal(prompt="x", aspect_ratio=ratio)
    assert (error.code, error.field) == ("invalid_request_error", "aspect_ratio")


def test_size_alias_is_folded_into_aspect_ratio() -> None:
    """``size`` alone sets the aspect ratio, and only aspect_ratio is sent."""
    body = VideoRequest(prompt="x", size="9:16").to_api_body()
    assert body["aspect_ratio"] == "9:16"
    assert "size" not in body


def test_size_equal_to_aspect_ratio_is_accepted() -> None:
    """Both given and equal is fine."""
    assert VideoRequest(prompt="x", size="9:16", aspect_ratio="9:16").aspect_ratio == "9:16"


def test_size_different_from_aspect_ratio_is_refused() -> None:
    """Both given and different is refused, naming size."""
    error = refusal(prompt="x", size="9:16", aspect_ratio="16:9")
    assert (error.code, error.field) == ("invalid_request_error", "size")


@pytest.mark.parametrize(
    ("urls", "mode"),
    [
        ([], "text-to-video"),
        (["https://example.com/a.png"], "image-to-video"),
        ([PNG_URI], "image-to-video"),
        (["https://e.com/1.png", "http://e.com/2.jpg", PNG_URI], "reference-fusion"),
    ],
)
def test_zero_one_or_three_images_are_accepted(urls: list[str], mode: str) -> None:
    """0, 1 and 3 images select the three modes; http(s) and data: URIs both pass."""
    request = VideoRequest(prompt="x", image_urls=urls)
    assert request.mode == mode
    assert request.to_api_body().get("image_urls", []) == urls


@pytest.mark.parametrize("count", [2, 4, 5])
def test_other_image_counts_are_refused(count: int) -> None:
    """2 (no first+last frame mode) and 4+ are unsupported_image_count."""
    error = refusal(prompt="x", image_urls=[f"https://e.com/{i}.png" for i in range(count)])
    assert (error.code, error.field, error.value) == (
        "unsupported_image_count",
        "image_urls",
        count,
    )


@pytest.mark.parametrize(
    "url",
    [
        "ftp://e.com/a.png",
        "file:///etc/passwd",
        "https://",
        "not a url",
        "https://e.com/a b.png",
        "data:image/png;base64,@@@not-base64@@@",
        "data:image/png;base64,",
        "data:text/plain;base64,aGVsbG8=",
        "",
    ],
)
def test_bad_image_urls_are_refused_naming_their_index(url: str) -> None:
    """Each image must be an http(s) URL or a valid data:image base64 URI."""
    error = refusal(prompt="x", image_urls=["https://e.com/ok.png", url, "https://e.com/b.png"])
    assert (error.code, error.field, error.value) == ("invalid_request_error", "image_urls[1]", url)


def test_image_urls_must_be_a_list() -> None:
    """A bare string is not silently split into characters."""
    error = refusal(prompt="x", image_urls="https://e.com/a.png")
    assert error.field == "image_urls"


def test_one_reference_video_is_accepted_and_two_refused() -> None:
    """video_urls takes 0 or 1 http(s) URL."""
    body = VideoRequest(prompt="x", video_urls=["https://e.com/m.mp4"]).to_api_body()
    assert body["video_urls"] == ["https://e.com/m.mp4"]
    error = refusal(prompt="x", video_urls=["https://e.com/1.mp4", "https://e.com/2.mp4"])
    assert (error.code, error.field) == ("invalid_request_error", "video_urls")
    assert refusal(prompt="x", video_urls=[PNG_URI]).field == "video_urls[0]"


def test_unknown_fields_are_refused() -> None:
    """A typo such as 'resoluton' fails loudly instead of being dropped."""
    error = refusal(prompt="x", resoluton="4k")
    assert (error.code, error.field) == ("invalid_request_error", "resoluton")


def test_every_problem_is_reported_at_once() -> None:
    """All broken rules are listed, so a manifest row is fixed in one go."""
    error = refusal(prompt="", duration=7, resolution="8k")
    assert [p.code for p in error.problems] == [
        "invalid_request_error",
        "invalid_duration",
        "invalid_resolution",
    ]
    assert "nothing was sent" in str(error)


def test_long_values_are_shortened_in_messages() -> None:
    """A megabyte data URI does not end up in a log line whole."""
    huge = "data:image/png;base64," + "A" * 100_000 + "!"
    error = refusal(prompt="x", image_urls=[huge])
    assert len(str(error)) < 500


def test_fingerprint_identifies_the_request_body() -> None:
    """Equal requests share a fingerprint; any field change alters it."""
    first = VideoRequest(prompt="a fox", resolution="4K")
    assert first.fingerprint() == VideoRequest(prompt="a fox", resolution="4k").fingerprint()
    assert first.fingerprint() != VideoRequest(prompt="a fox", resolution="1080p").fingerprint()
    assert len(first.fingerprint()) == 64


def test_requests_are_immutable_and_round_trip() -> None:
    """A validated request cannot be changed into an invalid one, and re-validates from its dump."""
    request = VideoRequest(prompt="x", image_urls=["https://e.com/a.png"])
    with pytest.raises(ValueError, match="frozen"):
        request.duration = 7  # type: ignore[misc]
    assert VideoRequest.model_validate(request.model_dump()) == request
    assert VideoRequest.model_validate_json(request.model_dump_json()) == request


def test_check_request_fields_is_usable_alone() -> None:
    """The pure rule check returns normalised fields and no problems for a good request."""
    fields, problems = check_request_fields({"prompt": "x", "resolution": "1080P", "size": "1:1"})
    assert problems == []
    assert (fields["resolution"], fields["aspect_ratio"]) == ("1080p", "1:1")


@pytest.mark.parametrize(
    "request_",
    [
        VideoRequest(prompt="a kite"),
        VideoRequest(prompt="a kite", duration=10, resolution="4K", aspect_ratio="9:16"),
        VideoRequest(prompt="a kite", image_urls=("https://example.com/a.png",)),
        VideoRequest(
            prompt="a kite",
            image_urls=tuple(f"https://example.com/{n}.png" for n in range(3)),
            video_urls=("https://example.com/motion.mp4",),
        ),
    ],
    ids=["text", "options", "image", "fusion-with-motion"],
)
def test_flow_parameters_are_generate_video_parameters_that_give_the_request_back(
    request_: VideoRequest,
) -> None:
    """The one mapping between a request and a ``generate_video`` run, both ways: every key is
    a parameter of the flow, and the flow rebuilds the very same request from them."""
    parameters = request_.flow_parameters()
    assert set(parameters) <= set(inspect.signature(agenerate_video.fn).parameters)
    assert VideoRequest.from_flow_parameters(parameters) == request_
    assert json.loads(json.dumps(parameters)) == parameters  # storable as deployment parameters
