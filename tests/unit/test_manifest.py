"""Reading batch manifests: every row validated, every problem named by line."""

from __future__ import annotations

import pytest

from omniflash_prefect.manifest import (
    MAX_MANIFEST_BYTES,
    ManifestError,
    decode_manifest,
    detect_format,
    parse_manifest,
)

JSONL = """\
{"id": "fox", "prompt": "a fox in snow", "duration": 4}
# a comment line

{"prompt": "a kite", "resolution": "1080P", "size": "9:16"}
{"id": "bad", "prompt": "x", "duration": 7, "resolution": "8k"}
not json at all
[1, 2]
{"id": "fox", "prompt": "again"}
{"id": "../evil", "prompt": "x"}
"""


def test_jsonl_rows_and_problems_by_line() -> None:
    """Valid rows become requests with their ids; each broken line is reported with its number."""
    manifest = parse_manifest(JSONL, "jsonl")
    assert [(r.line, r.id) for r in manifest.rows] == [(1, "fox"), (4, "row-4")]
    assert manifest.rows[1].request.resolution == "1080p"
    assert manifest.rows[1].request.aspect_ratio == "9:16"
    assert [p.line for p in manifest.problems] == [5, 6, 7, 8, 9]
    bad = manifest.problems[0]
    assert bad.id == "bad"
    assert bad.codes == ("invalid_duration", "invalid_resolution")
    assert "not valid JSON" in manifest.problems[1].message
    assert "JSON object" in manifest.problems[2].message
    assert "duplicate id, first used on line 1" in manifest.problems[3].message
    assert "id '../evil'" in manifest.problems[4].message
    assert not manifest.ok
    assert "line 5 (id bad): duration" in manifest.summary()


CSV = """\
id,prompt,duration,resolution,image_urls
a,"a fox, in snow",4,4K,
b,reference fusion,6,720p,https://e.com/1.png https://e.com/2.png https://e.com/3.png
c,two images,6,720p,https://e.com/1.png https://e.com/2.png
d,,6,720p,
,,,,
e,six and a half,6.5,720p,
"""


def test_csv_rows_are_typed_and_checked() -> None:
    """Durations become integers, URL cells split on spaces, blank rows are skipped."""
    manifest = parse_manifest(CSV, "csv")
    assert [r.id for r in manifest.rows] == ["a", "b"]
    assert manifest.rows[0].request.prompt == "a fox, in snow"
    assert manifest.rows[0].request.duration == 4
    assert len(manifest.rows[1].request.image_urls) == 3
    assert [(p.line, p.id, p.codes) for p in manifest.problems] == [
        (4, "c", ("unsupported_image_count",)),
        (5, "d", ("invalid_request_error",)),
        (7, "e", ("invalid_duration",)),
    ]


def test_csv_with_too_many_cells_is_a_row_problem() -> None:
    """A row longer than the header is refused, not silently truncated."""
    manifest = parse_manifest("prompt,duration\nhello,4,extra\nfine,6\n", "csv")
    assert [r.request.prompt for r in manifest.rows] == ["fine"]
    assert manifest.problems[0].line == 2


@pytest.mark.parametrize("text", ["duration\n4\n", "prompt,prompt\na,b\n", ",prompt\n,a\n"])
def test_bad_csv_headers_refuse_the_manifest(text: str) -> None:
    """No prompt column, repeated or empty column names: the whole file is refused."""
    with pytest.raises(ManifestError, match="line 1"):
        parse_manifest(text, "csv")


def test_empty_manifests_have_no_rows() -> None:
    """An empty file is an empty batch, not an error."""
    assert parse_manifest("", "csv").rows == ()
    assert parse_manifest("\n\n", "jsonl").ok


def test_decoding_accepts_a_bom_and_names_the_bad_line() -> None:
    """UTF-8 with or without BOM is read; other encodings are refused with a line number."""
    assert decode_manifest("\ufeffprompt\nhé\n".encode()) == "prompt\nhé\n"
    with pytest.raises(ManifestError, match=r"line 3: .*not UTF-8"):
        decode_manifest(b"prompt\nok\ncaf\xe9\n")


def test_huge_manifests_are_refused_up_front() -> None:
    """Over the byte limit: refused before any parsing."""
    with pytest.raises(ManifestError, match="split it"):
        decode_manifest(b"x" * (MAX_MANIFEST_BYTES + 1))


@pytest.mark.parametrize(
    ("name", "fmt"), [("a.csv", "csv"), ("A.JSONL", "jsonl"), ("b.ndjson", "jsonl")]
)
def test_format_from_name(name: str, fmt: str) -> None:
    """The extension decides the format."""
    assert detect_format(name) == fmt


def test_unknown_extension_is_refused() -> None:
    """A .txt manifest is ambiguous."""
    with pytest.raises(ManifestError, match=r"jsonl or \.csv"):
        detect_format("prompts.txt")


def test_numeric_ids_are_accepted_as_text() -> None:
    """An id of 7 in JSON is the row id '7'."""
    manifest = parse_manifest('{"id": 7, "prompt": "x"}\n', "jsonl")
    assert manifest.rows[0].id == "7"
