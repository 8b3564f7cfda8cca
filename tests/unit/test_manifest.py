"""Reading batch manifests: every row validated, every problem named by line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from omniflash_prefect.batches.manifest import (
    MAX_MANIFEST_BYTES,
    InvalidManifestError,
    ManifestError,
    decode_manifest,
    detect_format,
    manifest_from_records,
    parse_manifest,
    read_manifest,
    read_manifest_file,
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


def test_records_become_rows_numbered_from_one() -> None:
    """Objects are validated like manifest lines: row n is "line" n, ids given or row-<n>."""
    manifest = manifest_from_records(
        [
            {"id": "fox", "prompt": "a fox in snow", "duration": 4},
            {"prompt": "a kite", "resolution": "4K"},
        ]
    )
    assert manifest.ok
    assert [(r.line, r.id) for r in manifest.rows] == [(1, "fox"), (2, "row-2")]
    assert manifest.rows[0].request.duration == 4
    assert manifest.rows[1].request.resolution == "4k"


def test_records_are_not_modified() -> None:
    """Reading the records leaves the caller's objects as they were (the id stays in)."""
    record = {"id": "fox", "prompt": "a fox"}
    manifest_from_records([record])
    assert record == {"id": "fox", "prompt": "a fox"}


def test_record_problems_name_their_row_number() -> None:
    """A non-object, an invalid request and a repeated id are each reported by row number."""
    records: list[Any] = [
        {"id": "fox", "prompt": "a fox"},
        "a fox in snow",
        {"id": "bad", "prompt": "x", "duration": 7},
        {"id": "fox", "prompt": "another fox"},
        ["prompt", "x"],
        {"prompt": "fine"},
    ]
    manifest = manifest_from_records(records)
    assert [(r.line, r.id) for r in manifest.rows] == [(1, "fox"), (6, "row-6")]
    assert [(p.line, p.id) for p in manifest.problems] == [
        (2, None),
        (3, "bad"),
        (4, "fox"),
        (5, None),
    ]
    assert manifest.problems[0].message == "expected an object, got str"
    assert manifest.problems[1].codes == ("invalid_duration",)
    assert "duplicate id, first used on line 1" in manifest.problems[2].message
    assert manifest.problems[3].message == "expected an object, got list"
    assert "line 2: expected an object" in manifest.summary()


def test_read_manifest_decodes_and_picks_the_format_from_the_name() -> None:
    """The same bytes are CSV or JSONL depending on the name; undecodable bytes are refused."""
    csv = read_manifest(b"\xef\xbb\xbfid,prompt,duration\nfox,a fox,4\n", "batch.CSV")
    assert [(r.id, r.request.duration) for r in csv.rows] == [("fox", 4)]
    jsonl = read_manifest(b'{"prompt": "a kite"}\n', "batch.jsonl")
    assert [r.request.prompt for r in jsonl.rows] == ["a kite"]
    with pytest.raises(ManifestError, match="jsonl or"):
        read_manifest(b'{"prompt": "a kite"}\n', "batch.txt")
    with pytest.raises(ManifestError, match="not UTF-8"):
        read_manifest(b"prompt\ncaf\xe9\n", "batch.csv")


def test_read_manifest_file(tmp_path: Path) -> None:
    """A manifest file is read and validated, its format told by its name."""
    path = tmp_path / "videos.jsonl"
    path.write_text('{"id": "a", "prompt": "one"}\n{"id": "a", "prompt": "two"}\n')
    manifest = read_manifest_file(path)
    assert [r.id for r in manifest.rows] == ["a"]
    assert [p.line for p in manifest.problems] == [2]


def test_read_manifest_file_expands_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path starting with ~ is read from the home directory."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "videos.csv").write_text("prompt\na fox\n")
    manifest = read_manifest_file(Path("~/videos.csv"))
    assert [r.request.prompt for r in manifest.rows] == ["a fox"]


@pytest.mark.parametrize("name", ["missing.jsonl", "."])
def test_missing_manifest_file_is_refused(tmp_path: Path, name: str) -> None:
    """No such file (or a directory): a ManifestError naming the path."""
    path = tmp_path / name
    with pytest.raises(ManifestError, match="no such file") as caught:
        read_manifest_file(path)
    assert str(path) in str(caught.value)


def test_too_large_manifest_file_is_refused_without_reading_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file over the byte limit is refused from its size alone; its bytes are never read."""
    monkeypatch.setattr("omniflash_prefect.batches.manifest.MAX_MANIFEST_BYTES", 64)
    small = tmp_path / "small.jsonl"
    small.write_text('{"prompt": "a fox"}\n')
    assert read_manifest_file(small).ok  # under the (patched) limit it is read
    big = tmp_path / "big.jsonl"
    big.write_text('{"prompt": "a fox"}\n' * 10)

    def no_reading(self: Path) -> bytes:
        raise AssertionError(f"{self} was read")

    monkeypatch.setattr(Path, "read_bytes", no_reading)
    with pytest.raises(ManifestError, match="is over 64 bytes: split it") as caught:
        read_manifest_file(big)
    assert str(big) in str(caught.value)


def test_invalid_manifest_error_names_lines_and_ids() -> None:
    """The refusal counts the bad rows, names each line and id, and says nothing was sent."""
    manifest = parse_manifest(
        '{"id": "fox", "prompt": "ok"}\n'
        '{"id": "bad", "prompt": "x", "duration": 7}\n'
        "not json\n"
        '{"id": "fox", "prompt": "again"}\n',
        "jsonl",
    )
    error = InvalidManifestError(manifest)
    assert isinstance(error, ManifestError)
    assert error.problems == manifest.problems
    message = str(error)
    assert message.startswith("3 invalid manifest row(s); nothing was submitted.")
    assert "skip_invalid" in message
    assert "line 2 (id bad): duration" in message
    assert "line 3: not valid JSON" in message
    assert "line 4 (id fox): duplicate id, first used on line 1" in message
    assert "line 1" not in message.replace("first used on line 1", "")


def test_jsonl_null_means_not_given() -> None:
    """A JSONL ``null`` (as data tools write for missing values) is read like an empty CSV cell:
    the field takes its default, although ``VideoRequest`` itself refuses an explicit null."""
    manifest = parse_manifest(
        '{"id": "a", "prompt": "A fox", "aspect_ratio": null, "image_urls": null}\n', "jsonl"
    )
    assert manifest.problems == ()
    assert manifest.rows[0].request.aspect_ratio == "16:9"
    assert manifest.rows[0].request.image_urls == ()
