"""Batch manifests: many video requests in JSONL or CSV, every row checked before anything is paid.

A manifest is read whole and validated row by row first, so a batch never starts with a row the
API would refuse; each problem names its line (1-based, as an editor shows it) and row id.
Pure: text in, rows and problems out.

* JSONL: one JSON object per line with the request fields and an optional ``id``; blank lines and
  lines starting with ``#`` are skipped; a ``null`` value means "not given", like an empty cell.
* CSV: a header row with the same column names; ``image_urls``/``video_urls`` cells hold URLs
  separated by whitespace; ``duration`` is an integer; empty cells mean "not given".
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.errors import InvalidVideoRequestError, OmniFlashError

ManifestFormat = Literal["jsonl", "csv"]

MAX_MANIFEST_BYTES: Final = 64 * 1024 * 1024
MAX_MANIFEST_ROWS: Final = 100_000
_ROW_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_LIST_COLUMNS: Final = ("image_urls", "video_urls")


class ManifestError(OmniFlashError):
    """The manifest as a whole cannot be read (encoding, size, format, header)."""

    charged = False
    exit_status = "invalid"


class InvalidManifestError(ManifestError):
    """Some rows are invalid, so the batch refuses to start (unless told to skip them)."""

    def __init__(self, manifest: Manifest) -> None:
        self.problems = manifest.problems
        super().__init__(
            f"{len(self.problems)} invalid manifest row(s); nothing was submitted. Fix them, or "
            "skip them with skip_invalid / --skip-invalid:\n" + manifest.summary()
        )


@dataclass(frozen=True)
class ManifestRow:
    """One valid row: its line, its id (given or ``row-<line>``) and its request."""

    line: int
    id: str
    request: VideoRequest


@dataclass(frozen=True)
class RowProblem:
    """Why one row was refused; ``codes`` are the API's error codes when the request was invalid."""

    line: int
    id: str | None
    message: str
    codes: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f"line {self.line}" + (f" (id {self.id})" if self.id else "")
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Manifest:
    """The result of reading a manifest: valid rows and refused rows, in file order."""

    rows: tuple[ManifestRow, ...]
    problems: tuple[RowProblem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when every row is valid."""
        return not self.problems

    def summary(self, limit: int = 20) -> str:
        """A human report of the problems, the first ``limit`` of them."""
        lines = [f"  {problem}" for problem in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)


def detect_format(name: str) -> ManifestFormat:
    """The format from a file name: ``.csv`` is CSV, ``.jsonl``/``.ndjson``/``.json`` JSONL."""
    lowered = name.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise ManifestError(f"cannot tell the format of {name!r}: name it .jsonl or .csv")


def decode_manifest(data: bytes) -> str:
    """UTF-8 text (a byte-order mark is allowed), or a :class:`ManifestError` naming the line."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"the manifest is {len(data)} bytes, over the {MAX_MANIFEST_BYTES}-byte limit: "
            "split it into several batches"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ManifestError(
            f"line {line}: the manifest is not UTF-8 (byte {exc.start}); save it as UTF-8"
        ) from None


def parse_manifest(text: str, fmt: ManifestFormat) -> Manifest:
    """Read and validate every row of a manifest."""
    return _validate(_jsonl_records(text) if fmt == "jsonl" else _csv_records(text))


def manifest_from_records(records: Iterable[Mapping[str, Any]]) -> Manifest:
    """Validate requests given as objects (e.g. a flow parameter); row *n* is "line" *n*."""
    return _validate(
        (number, dict(record) if isinstance(record, Mapping) else _not_an_object(number, record))
        for number, record in enumerate(records, start=1)
    )


def _not_an_object(line: int, value: object) -> RowProblem:
    return RowProblem(line, None, f"expected an object, got {type(value).__name__}")


def _validate(records: Iterable[tuple[int, dict[str, Any] | RowProblem]]) -> Manifest:
    rows: list[ManifestRow] = []
    problems: list[RowProblem] = []
    seen: dict[str, int] = {}
    for count, (line, record) in enumerate(records, start=1):
        if count > MAX_MANIFEST_ROWS:
            raise ManifestError(
                f"more than {MAX_MANIFEST_ROWS} rows: split the manifest into several batches"
            )
        if isinstance(record, RowProblem):
            problems.append(record)
            continue
        row_id, id_problem = _row_id(record.pop("id", None), line)
        if id_problem is not None:
            problems.append(id_problem)
            continue
        if row_id in seen:
            problems.append(
                RowProblem(line, row_id, f"duplicate id, first used on line {seen[row_id]}")
            )
            continue
        seen[row_id] = line
        fields = {name: value for name, value in record.items() if value is not None}
        try:
            rows.append(ManifestRow(line, row_id, VideoRequest.model_validate(fields)))
        except InvalidVideoRequestError as exc:
            message = "; ".join(
                f"{p.field}: {p.message}" + (f" (allowed: {p.allowed})" if p.allowed else "")
                for p in exc.problems
            )
            codes = tuple(dict.fromkeys(p.code for p in exc.problems))
            problems.append(RowProblem(line, row_id, message, codes))
    return Manifest(rows=tuple(rows), problems=tuple(problems))


def _row_id(value: Any, line: int) -> tuple[str, RowProblem | None]:
    if value is None or value == "":
        return f"row-{line}", None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and _ROW_ID.fullmatch(value):
        return value, None
    return "", RowProblem(
        line, None, f"id {value!r} must be 1-128 characters of letters, digits, '.', '_' or '-'"
    )


def _jsonl_records(text: str) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            yield line, RowProblem(line, None, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(value, dict):
            yield (
                line,
                RowProblem(line, None, f"expected a JSON object, got {type(value).__name__}"),
            )
            continue
        yield line, value


def _csv_records(text: str) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise ManifestError(f"line 1: unreadable CSV header ({exc})") from None
    if not header:
        return
    if "prompt" not in header:
        raise ManifestError("line 1: the CSV header has no 'prompt' column")
    blank = [name for name in header if not name or not name.strip()]
    if blank or len(set(header)) != len(header):
        raise ManifestError("line 1: the CSV header has empty or repeated column names")
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, RowProblem(reader.line_num, None, f"unreadable CSV ({exc})")
            continue
        line = reader.line_num
        if None in cells:
            yield line, RowProblem(line, None, "more cells than header columns")
            continue
        if not any((value or "").strip() for value in cells.values()):
            continue
        yield line, _csv_fields(cells)


def _csv_fields(cells: dict[str, str | None]) -> dict[str, Any]:
    """Typed request fields from CSV text cells: empty means absent, lists split on spaces."""
    fields: dict[str, Any] = {}
    for name, raw in cells.items():
        value = (raw or "").strip()
        if not value:
            continue
        if name in _LIST_COLUMNS:
            fields[name] = value.split()
        elif name == "duration" and value.isascii() and value.isdigit():
            fields[name] = int(value)
        else:
            fields[name] = value
    return fields


def read_manifest(data: bytes, name: str) -> Manifest:
    """Decode, detect the format from ``name``, and validate every row."""
    return parse_manifest(decode_manifest(data), detect_format(name))


def read_manifest_file(path: Path) -> Manifest:
    """A local manifest file, read whole (it is size-checked before reading)."""
    path = path.expanduser()
    if not path.is_file():
        raise ManifestError(f"manifest {str(path)!r}: no such file")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest {str(path)!r} is over {MAX_MANIFEST_BYTES} bytes: split it")
    return read_manifest(path.read_bytes(), path.name)
