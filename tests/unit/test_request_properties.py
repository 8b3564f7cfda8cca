"""Property checks: the client's local request rules and the emulator's never disagree.

``VideoRequest`` (omniflash_prefect/core/requests.py) and ``validate_submit``
(omniflash_prefect/emulator/validation.py) implement the rules of the provider's submit endpoint
(its field table: model, prompt, duration, resolution, aspect_ratio, size, image_urls,
video_urls) independently. Hypothesis generates request dicts mixing valid, invalid and
borderline values for every field, and checks that both sides accept exactly the same dicts,
refuse with a shared error code, and that every local refusal names the field at fault. Pure:
no I/O, no server.

Two cases these properties once found are pinned by explicit tests at the end of this file: an
explicit JSON ``null`` for an optional field (both sides refuse it), and a ``data:image`` URI whose
base64 payload has non-ASCII characters (both sides refuse it with a 400, no crash).
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable
from typing import Any, Final

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from omniflash_prefect.core.requests import MODEL_NAME, VideoRequest
from omniflash_prefect.emulator.errors import ApiError
from omniflash_prefect.emulator.validation import ValidSubmit, price_of, validate_submit
from omniflash_prefect.errors import InvalidVideoRequestError

#: The fields of ``POST /v1/videos/generations`` (the provider's field table).
REQUEST_FIELDS: Final = (
    "model",
    "prompt",
    "duration",
    "resolution",
    "aspect_ratio",
    "size",
    "image_urls",
    "video_urls",
)
LIST_FIELDS: Final = ("image_urls", "video_urls")
#: The 400 error codes the provider answers a refused submit with.
API_CODES: Final = frozenset(
    {"invalid_request_error", "invalid_duration", "invalid_resolution", "unsupported_image_count"}
)
#: Optional fields the API types as string or array: an explicit ``null`` is refused by both sides.
NULLABLE_LOOKING_FIELDS: Final = ("aspect_ratio", "size", "image_urls", "video_urls")
#: Fields a generated request may perturb; "extra" adds an unknown field.
PERTURBABLE: Final = (*REQUEST_FIELDS, "extra")

#: The rules are pure and cheap: the two agreement properties get a few hundred examples, the
#: others fewer, so the whole file runs in a few seconds. No deadline (CI machines vary) and no
#: example database (a failing example is printed, not saved for replay).
THOROUGH = settings(max_examples=250, deadline=None, database=None)
QUICK = settings(max_examples=100, deadline=None, database=None)


class _Missing:
    """Marks a field to delete from the request rather than set."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

# --- values -------------------------------------------------------------------------------------

#: Any text JSON can carry (no lone surrogates).
TEXT = st.characters(codec="utf-8")
WHITESPACE = " \t\n\r\x0b\x0c\x1c\x85\xa0\u2003\u2028\u3000"

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(TEXT, max_size=12)
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(TEXT, max_size=6), inner),
    max_leaves=5,
)

# prompt: non-empty after stripping whitespace; any script, any length.
valid_prompts = st.one_of(
    st.sampled_from(
        ["a fox", "  padded prompt  ", "\u732b\u304c\u6ce2\u306b\u4e57\u308b", "\U0001f98a"]
    ),
    st.text(TEXT, min_size=1, max_size=80).filter(lambda text: text.strip() != ""),
    st.builds(
        lambda unit, count: unit * count,
        st.sampled_from(["a fox ", "\xdf"]),
        st.integers(1000, 4000),
    ),
)
invalid_prompts = st.one_of(
    st.just(""),
    st.text(st.sampled_from(WHITESPACE), min_size=1, max_size=8),
    st.sampled_from([None, 42, 0, True, ["a cat"], {"text": "a cat"}, MISSING]),
)
tricky_prompts = st.text(TEXT | st.sampled_from(WHITESPACE), max_size=6) | json_values

# duration: integer seconds, one of 4/6/8/10.
DURATIONS: Final = (4, 6, 8, 10)
valid_durations = st.sampled_from(DURATIONS)
invalid_durations = st.one_of(
    st.sampled_from([5, 7, 0, -6, 12, 3, 9, 11, 60, 2**31]),
    st.integers(-(10**6), 10**6).filter(lambda n: n not in DURATIONS),
    st.sampled_from([4.0, 6.0, 8.0, 10.0, 4.5, 5.5, -6.0]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["4", "6", "10", "six", "6s", "", True, False, None, [6], {"s": 6}]),
)
tricky_durations = st.integers(-20, 20) | st.floats(-20, 20) | json_values


def _cased(text: str) -> st.SearchStrategy[str]:
    """``text`` with each letter in a drawn case."""
    flips = st.lists(st.booleans(), min_size=len(text), max_size=len(text))
    return flips.map(
        lambda up: "".join(c.upper() if u else c for c, u in zip(text, up, strict=True))
    )


# resolution: 720p, 1080p or 4k in any case.
RESOLUTIONS: Final = ("720p", "1080p", "4k")
valid_resolutions = st.sampled_from(RESOLUTIONS).flatmap(_cased)
invalid_resolutions = st.one_of(
    st.sampled_from(["480p", "2k", "8K", "720", "1080", "1080 p", " 720p", "720p ", "", "720i"]),
    st.text(TEXT, max_size=8).filter(lambda text: text.lower() not in RESOLUTIONS),
    st.sampled_from([720, 1080, 4, 720.0, True, None, ["720p"], {"p": 720}]),
)
# Look-alikes: the Kelvin sign "\u212a" lower-cases to "k", the Cyrillic "\u041a" does not.
tricky_resolutions = st.one_of(
    st.sampled_from(["4\u212a", "\uff14k", "720\uff30", "1080p\u200b", "4\u041a"]),
    st.text(TEXT, max_size=6),
    json_values,
)

# aspect_ratio and its alias size: W:H with positive integers without leading zeros.
COMMON_RATIOS: Final = ("16:9", "9:16", "1:1", "4:3", "21:9")
valid_ratios = st.sampled_from(COMMON_RATIOS) | st.builds(
    "{}:{}".format, st.integers(1, 10**5), st.integers(1, 10**5)
)
invalid_ratios = st.one_of(
    st.sampled_from(
        [
            "016:9",
            "16:09",
            " 16:9",
            "16:9 ",
            "16 : 9",
            "16:9\n",
            "0:9",
            "16:0",
            "0:0",
            "16x9",
            "16/9",
            "16:9:1",
            "-16:9",
            "1.5:1",
            "",
            ":",
            "16:",
            ":9",
            "landscape",
            "\uff11\uff16:\uff19",
        ]
    ),
    st.builds("0{}:{}".format, st.integers(0, 99), st.integers(1, 99)),
    st.builds("{}:0{}".format, st.integers(1, 99), st.integers(0, 99)),
    st.sampled_from([169, 1.78, True, ["16:9"], {"w": 16, "h": 9}]),
)
tricky_ratios = st.one_of(
    st.sampled_from(COMMON_RATIOS),
    st.from_regex(r"\A[ 0-9]{0,3}[:x/][ 0-9]{0,3}\Z"),
    st.text(TEXT, max_size=8),
    json_values,
)

# URLs: absolute http(s) with a host and no whitespace; images may also be data:image base64 URIs.
URL_TEXT = st.characters(codec="utf-8", exclude_categories=("Cc", "Z")).filter(
    lambda char: not char.isspace() and char not in "[]"
)
hosts = st.sampled_from(
    ["example.com", "cdn.example.org", "127.0.0.1:8765", "[::1]", "localhost", "ex\xe9.com"]
) | st.from_regex(r"\A[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,2}\Z")
http_urls = st.builds(
    "{}://{}/{}".format,
    st.sampled_from(["http", "https", "HTTP", "Https"]),
    hosts,
    st.text(URL_TEXT, max_size=24),
)
data_image_uris = st.builds(
    "data:image/{};base64,{}".format,
    st.sampled_from(["png", "jpeg", "webp", "gif", "svg+xml"])
    | st.from_regex(r"\A[A-Za-z0-9.+-]{1,12}\Z"),
    st.binary(min_size=1, max_size=48).map(lambda data: base64.b64encode(data).decode()),
)
# Invalid by construction; every data: payload here is ASCII (see the module docstring).
bad_url_items = st.one_of(
    st.sampled_from(
        [
            "",
            "not a url",
            "example.com/a.jpg",
            "ftp://example.com/a.jpg",
            "file:///etc/passwd",
            "https://",
            "https:///a.jpg",
            "http://[::1/a.jpg",
            "mailto:someone@example.com",
            "data:image/png;base64,",
            "data:image/png;base64,@@@not-base64@@@",
            "data:image/png;base64,iVBORw0KGgo",
            "data:text/plain;base64,aGVsbG8=",
            "data:image/png,iVBORw0KGgo=",
            "data:;base64,iVBORw0KGgo=",
        ]
    ),
    st.text(st.sampled_from(WHITESPACE), min_size=1, max_size=4),
    st.builds(
        lambda url, cut, space: url[:cut] + space + url[cut:],
        http_urls,
        st.integers(0, 40),
        st.sampled_from(WHITESPACE),
    ),
    st.sampled_from([None, 7, 1.5, True, ["https://example.com/a.jpg"], {"url": "x"}]),
)
image_items = http_urls | data_image_uris
valid_image_lists: st.SearchStrategy[list[str]] = st.one_of(
    st.just([]),
    st.lists(image_items, min_size=1, max_size=1),
    st.lists(image_items, min_size=3, max_size=3),
)


@st.composite
def _list_with_one_bad(
    draw: st.DrawFn, good: st.SearchStrategy[Any], sizes: tuple[int, ...]
) -> list[Any]:
    """A list of an allowed length whose items are ``good`` but one, which is a bad URL."""
    size = draw(st.sampled_from(sizes))
    items: list[Any] = draw(st.lists(good, min_size=size, max_size=size))
    items[draw(st.integers(0, size - 1))] = draw(bad_url_items)
    return items


invalid_image_lists: st.SearchStrategy[Any] = st.one_of(
    st.integers(2, 5)
    .filter(lambda n: n != 3)
    .flatmap(lambda n: st.lists(image_items, min_size=n, max_size=n)),
    _list_with_one_bad(image_items, (1, 3)),
    st.sampled_from(["https://example.com/a.jpg", 7, True, {"url": "https://example.com/a.jpg"}]),
)
valid_video_lists = st.lists(http_urls, max_size=1)
invalid_video_lists = st.one_of(
    st.lists(http_urls, min_size=2, max_size=2),
    st.lists(bad_url_items | data_image_uris, min_size=1, max_size=1),
    st.sampled_from(["https://example.com/a.mp4", 7, {"url": "https://example.com/a.mp4"}]),
)
mixed_items = image_items | bad_url_items | st.text(TEXT, max_size=12)
tricky_url_lists = st.lists(mixed_items, max_size=5) | json_values

# Unknown fields: typos of real ones and anything else (no brackets, so "x[1]" stays unambiguous).
extra_names = st.sampled_from(
    ["seed", "callback_url", "resoluton", "Prompt", "aspectRatio", "negative_prompt", "image_url"]
) | st.text(TEXT.filter(lambda char: char not in "[]"), min_size=1, max_size=10).filter(
    lambda name: name not in REQUEST_FIELDS
)

VALID: Final[dict[str, st.SearchStrategy[Any]]] = {
    "model": st.just(MODEL_NAME),
    "prompt": valid_prompts,
    "duration": valid_durations,
    "resolution": valid_resolutions,
    "aspect_ratio": valid_ratios,
    "size": valid_ratios,
    "image_urls": valid_image_lists,
    "video_urls": valid_video_lists,
}
INVALID: Final[dict[str, st.SearchStrategy[Any]]] = {
    "model": st.sampled_from(["omni-flash-ext", "Omni-Flash", "", 1, None]),
    "prompt": invalid_prompts,
    "duration": invalid_durations,
    "resolution": invalid_resolutions,
    "aspect_ratio": invalid_ratios,
    "size": invalid_ratios,
    "image_urls": invalid_image_lists,
    "video_urls": invalid_video_lists,
}
TRICKY: Final[dict[str, st.SearchStrategy[Any]]] = {
    "model": st.text(TEXT, max_size=16) | st.just(MODEL_NAME),
    "prompt": tricky_prompts,
    "duration": tricky_durations,
    "resolution": tricky_resolutions,
    "aspect_ratio": tricky_ratios,
    "size": tricky_ratios,
    "image_urls": tricky_url_lists,
    "video_urls": tricky_url_lists,
}

# --- requests -----------------------------------------------------------------------------------


@st.composite
def valid_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A request dict every documented rule accepts; optional fields present or not."""
    raw: dict[str, Any] = {"prompt": draw(valid_prompts)}
    for field in ("model", "duration", "resolution", "image_urls", "video_urls"):
        if draw(st.booleans()):
            raw[field] = draw(VALID[field])
    ratio = draw(valid_ratios)
    spelling = draw(st.sampled_from(["none", "aspect_ratio", "size", "both"]))
    if spelling in ("aspect_ratio", "both"):
        raw["aspect_ratio"] = ratio
    if spelling in ("size", "both"):
        raw["size"] = ratio
    return raw


@st.composite
def raw_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid request with up to four fields made invalid, borderline, missing or added."""
    raw = draw(valid_requests())
    # Mostly one field at a time (disagreements are per field), sometimes none or several.
    count = draw(st.sampled_from([1, 1, 1, 2, 0, 3, 4]))
    fields = st.lists(st.sampled_from(PERTURBABLE), unique=True, min_size=count, max_size=count)
    for field in draw(fields):
        if field == "extra":
            raw[draw(extra_names)] = draw(json_values)
            continue
        kind = draw(st.sampled_from(["tricky", "tricky", "invalid", "absent"]))
        value = (
            MISSING
            if kind == "absent"
            else draw(INVALID[field] if kind == "invalid" else TRICKY[field])
        )
        if value is MISSING:
            raw.pop(field, None)
        else:
            raw[field] = value
    return raw


@st.composite
def one_invalid_field(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid request with exactly one field made invalid, and that field's name."""
    raw = draw(valid_requests())
    field = draw(st.sampled_from(PERTURBABLE))
    if field == "extra":
        field = draw(extra_names)
        raw[field] = draw(json_values)
        return raw, field
    value: Any
    if field == "size" and "aspect_ratio" in raw and draw(st.booleans()):
        # A well-formed size that differs from the aspect ratio it aliases.
        value = draw(valid_ratios.filter(lambda ratio: ratio != raw["aspect_ratio"]))
    else:
        value = draw(INVALID[field])
    if value is MISSING:
        del raw[field]
    else:
        raw[field] = value
    return raw, field


# --- verdicts -----------------------------------------------------------------------------------

LocalVerdict = VideoRequest | InvalidVideoRequestError
RemoteVerdict = ValidSubmit | ApiError


def local_verdict(raw: dict[str, Any]) -> LocalVerdict:
    """What the client decides about ``raw`` (on a copy, so nothing can leak between sides)."""
    try:
        return VideoRequest.model_validate(copy.deepcopy(raw))
    except InvalidVideoRequestError as error:
        return error


def accepted(raw: dict[str, Any]) -> VideoRequest:
    """The request the client builds from ``raw``, which must be valid."""
    verdict = local_verdict(raw)
    assert isinstance(verdict, VideoRequest), describe(verdict)
    return verdict


def emulator_verdict(body: dict[str, Any]) -> RemoteVerdict:
    """What the emulator decides about a submit body; any other exception propagates (a bug)."""
    try:
        return validate_submit(copy.deepcopy(body))
    except ApiError as error:
        return error


def describe(verdict: LocalVerdict | RemoteVerdict) -> str:
    """One line saying what a side decided, for failure messages."""
    if isinstance(verdict, VideoRequest):
        return f"accepts, sending {verdict.to_api_body()!r}"
    if isinstance(verdict, InvalidVideoRequestError):
        return "refuses: " + "; ".join(f"{p.field} [{p.code}]" for p in verdict.problems)
    if isinstance(verdict, ValidSubmit):
        return f"accepts: {verdict}"
    return f"refuses with {verdict.status} [{verdict.code}]: {verdict.message}"


def problem_target(raw: dict[str, Any], field: str) -> tuple[str, int | None]:
    """The request field a problem names, and the list index when it names one item."""
    if field in raw or field in REQUEST_FIELDS:
        return field, None
    item = re.fullmatch(r"(?P<name>.+)\[(?P<index>[0-9]+)\]", field)
    if item is None:
        return field, None
    return item["name"], int(item["index"])


def assert_problems_name_given_fields(raw: dict[str, Any], error: InvalidVideoRequestError) -> None:
    """Each problem names a request field (or an unknown one that was given) and its value."""
    assert error.problems
    for problem in error.problems:
        name, index = problem_target(raw, problem.field)
        assert name in REQUEST_FIELDS or name in raw, f"{problem} names no field of {raw!r}"
        assert problem.code in API_CODES, problem
        assert problem.message, problem
        if index is not None:
            assert name in LIST_FIELDS, problem
            assert isinstance(raw[name], list), problem
            assert index < len(raw[name]), problem
            assert problem.value == raw[name][index], problem
        elif name in LIST_FIELDS and isinstance(raw.get(name), list):
            # a count problem reports how many items were given
            assert problem.value == len(raw[name]), problem
        else:
            assert problem.value == raw.get(name), problem


# --- properties ---------------------------------------------------------------------------------

MOTION: Final = "https://example.com/motion.mp4"
#: The cases the provider's field table names, run as explicit examples on every run (random
#: draws may miss a single value such as 5); the trailing comment is the field's rule.
CONTRACT_CASES: Final[list[dict[str, Any]]] = [
    {"prompt": ""},  # prompt
    {"prompt": " \n\t "},  # prompt
    {"duration": 6},  # prompt: required
    {"prompt": "a fox", "duration": 5},  # duration
    {"prompt": "a fox", "duration": 7},  # duration
    {"prompt": "a fox", "duration": 4},  # duration
    {"prompt": "a fox", "duration": 10},  # duration
    {"prompt": "a fox", "duration": 6.0},  # duration: integer
    {"prompt": "a fox", "duration": "6"},  # duration: integer
    {"prompt": "a fox", "duration": True},  # duration: integer
    {"prompt": "a fox", "resolution": "4K"},  # resolution: case-insensitive
    {"prompt": "a fox", "resolution": "1080P"},  # resolution
    {"prompt": "a fox", "resolution": "480p"},  # resolution
    {"prompt": "a fox", "resolution": "2k"},  # resolution
    {"prompt": "a fox", "aspect_ratio": "9:16"},  # aspect_ratio
    {"prompt": "a fox", "aspect_ratio": "016:9"},  # aspect_ratio
    {"prompt": "a fox", "aspect_ratio": "0:9"},  # aspect_ratio
    {"prompt": "a fox", "size": "9:16"},  # size
    {"prompt": "a fox", "size": "9:16", "aspect_ratio": "9:16"},  # size
    {"prompt": "a fox", "size": "9:16", "aspect_ratio": "16:9"},  # size
    *(
        {"prompt": "a fox", "image_urls": [f"https://example.com/{n}.png" for n in range(count)]}
        for count in range(6)
    ),  # image_urls: 0, 1, 3 allowed; 2, 4, 5 not
    {"prompt": "a fox", "image_urls": ["data:image/png;base64,iVBORw0KGgo="]},  # image_urls
    {"prompt": "a fox", "image_urls": ["data:image/png;base64,"]},  # image_urls
    {"prompt": "a fox", "video_urls": [MOTION]},  # video_urls
    {"prompt": "a fox", "video_urls": [MOTION, MOTION]},  # video_urls: 0 or 1
    {"prompt": "a fox", "seed": 1},  # not a field of the table
]


def with_contract_cases(test: Callable[..., None]) -> Callable[..., None]:
    """Add every :data:`CONTRACT_CASES` request as an explicit Hypothesis example of ``test``."""
    for raw in reversed(CONTRACT_CASES):
        test = example(raw=raw)(test)
    return test


@THOROUGH
@given(raw=raw_requests())
@with_contract_cases
def test_client_and_emulator_accept_and_refuse_the_same_requests(raw: dict[str, Any]) -> None:
    """A raw request is accepted locally exactly when the emulator accepts it, codes shared."""
    local = local_verdict(raw)
    # The client fills in the model itself (VideoRequest's default); the emulator requires it
    # (the field table: "model | string, required"), so the provider sees it either way.
    remote = emulator_verdict({"model": MODEL_NAME, **raw})
    agree = isinstance(local, VideoRequest) == isinstance(remote, ValidSubmit)
    event("accepted" if isinstance(local, VideoRequest) else "refused")
    assert agree, f"client {describe(local)} but emulator {describe(remote)} for {raw!r}"
    if isinstance(local, VideoRequest):
        assert isinstance(remote, ValidSubmit)
        assert (remote.duration, remote.resolution) == (local.duration, local.resolution)
        assert remote.price == price_of(local.duration, local.resolution)
        # What the client actually sends (defaults explicit, size folded) is judged the same.
        assert emulator_verdict(local.to_api_body()) == remote
    else:
        assert isinstance(remote, ApiError)
        assert remote.status == 400
        local_codes = {problem.code for problem in local.problems}
        assert remote.code in local_codes, f"emulator {describe(remote)}; client {describe(local)}"


@QUICK
@given(raw=valid_requests())
def test_every_valid_request_is_sent_as_a_body_the_emulator_accepts(raw: dict[str, Any]) -> None:
    """A request built from documented values passes locally and its body passes the emulator."""
    request = accepted(raw)
    body = request.to_api_body()
    assert set(body) <= set(REQUEST_FIELDS) - {"size"}
    assert None not in body.values()
    remote = emulator_verdict(body)
    assert isinstance(remote, ValidSubmit), describe(remote)
    assert remote.duration == raw.get("duration", 6) == request.duration
    assert remote.resolution == raw.get("resolution", "720p").lower() == request.resolution
    assert remote.price == price_of(request.duration, request.resolution)
    assert body["aspect_ratio"] == raw.get("aspect_ratio", raw.get("size", "16:9"))


@QUICK
@given(raw=raw_requests())
def test_every_local_refusal_names_a_field_of_the_request(raw: dict[str, Any]) -> None:
    """Each problem of a refusal names a request field (or a given unknown one) and its value."""
    verdict = local_verdict(raw)
    if isinstance(verdict, InvalidVideoRequestError):
        assert_problems_name_given_fields(raw, verdict)


@THOROUGH
@given(case=one_invalid_field())
def test_one_invalid_field_is_named_by_both_sides(case: tuple[dict[str, Any], str]) -> None:
    """With exactly one field broken, both sides refuse and blame that field (or its alias)."""
    raw, field = case
    local = local_verdict(raw)
    remote = emulator_verdict({"model": MODEL_NAME, **raw})
    assert isinstance(local, InvalidVideoRequestError), f"client {describe(local)} for {raw!r}"
    assert isinstance(remote, ApiError), f"emulator {describe(remote)} for {raw!r}"
    assert_problems_name_given_fields(raw, local)
    named = {problem_target(raw, problem.field)[0] for problem in local.problems}
    # A malformed aspect_ratio also makes a given size differ from the default ratio it is
    # compared with, so size may be named alongside it (size is aspect_ratio's alias).
    related = {field, "size"} if field == "aspect_ratio" else {field}
    assert field in named, describe(local)
    assert named <= related, describe(local)
    assert remote.code in {problem.code for problem in local.problems}, describe(remote)
    assert field in remote.message, describe(remote)


@QUICK
@given(raw=valid_requests(), upper=st.booleans(), explicit=st.booleans())
def test_fingerprint_is_stable_across_equivalent_spellings(
    raw: dict[str, Any], upper: bool, explicit: bool
) -> None:
    """Equal requests share a fingerprint, and re-parsing the sent body keeps it."""
    request = accepted(raw)
    again = accepted(raw)
    assert again == request
    assert again.fingerprint() == request.fingerprint()

    body = request.to_api_body()
    reparsed = accepted(body)
    assert reparsed == request
    assert reparsed.fingerprint() == request.fingerprint()
    assert accepted(json.loads(json.dumps(body))).fingerprint() == request.fingerprint()

    # The same video spelled differently: other case, size instead of aspect_ratio, defaults.
    variant = dict(body)
    if upper:
        variant["resolution"] = variant["resolution"].upper()
    variant["size"] = variant.pop("aspect_ratio")
    if explicit:
        variant.setdefault("image_urls", [])
        variant.setdefault("video_urls", [])
    else:
        del variant["model"]
    assert accepted(variant).fingerprint() == request.fingerprint()


@QUICK
@given(first=valid_requests(), second=valid_requests())
def test_fingerprints_differ_exactly_when_bodies_differ(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    """Two accepted requests share a fingerprint if and only if they send the same body."""
    a, b = accepted(first), accepted(second)
    assert (a.fingerprint() == b.fingerprint()) == (a.to_api_body() == b.to_api_body())


# --- cases the properties found: both sides now refuse them alike ---


@pytest.mark.parametrize("field", NULLABLE_LOOKING_FIELDS)
def test_explicit_null_optional_field_is_judged_alike(field: str) -> None:
    """An explicit null for an optional field is refused by both sides, naming the field."""
    raw = {"prompt": "a fox", field: None}
    local = local_verdict(raw)
    remote = emulator_verdict({"model": MODEL_NAME, **raw})
    assert isinstance(local, InvalidVideoRequestError)
    assert [(p.field, p.code) for p in local.problems] == [(field, "invalid_request_error")]
    assert not isinstance(remote, ValidSubmit), f"emulator {describe(remote)}"


def test_non_ascii_data_uri_payload_is_refused_by_both_sides() -> None:
    """A data:image URI with a non-ASCII payload is a 400 invalid_request_error on both sides."""
    raw = {"prompt": "a fox", "image_urls": ["data:image/png;base64,\xe9"]}
    local = local_verdict(raw)
    assert isinstance(local, InvalidVideoRequestError)
    assert [(p.field, p.code) for p in local.problems] == [
        ("image_urls[0]", "invalid_request_error")
    ]
    with pytest.raises(ApiError) as refused:
        validate_submit({"model": MODEL_NAME, **raw})
    assert (refused.value.status, refused.value.code) == (400, "invalid_request_error")
