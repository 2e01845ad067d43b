"""Data files in and out: the one loader for JSONL, JSON, CSV and Parquet, and atomic JSONL output.

:func:`read_examples` maps each row through the task's ``[input]`` fields and checks it (text
present, gold labels known, ids unique). Every bad row becomes one message ``file:line: what is
wrong``; a file that cannot be trusted as a whole (bad UTF-8, not JSON/CSV/Parquet) is an error.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import hashlib
import io
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeGuard

from stillhouse.data.records import Answer, Example, Kind, Span, answer_to_json, text_id
from stillhouse.errors import SKIP_INVALID, Errors, fail, from_os_error
from stillhouse.paths import require_file
from stillhouse.task import Task

_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_LABELS_SHOWN = 10
# Long texts (a 1 MB document) exceed the csv module's default 128 KiB field limit.
_CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)


@dataclass(frozen=True)
class ReadReport:
    """The valid examples of a data file in file order, and one message per skipped row."""

    examples: list[Example]
    skipped: list[str]
    truncated: int = 0


class _InvalidRow(Exception):
    """Why a row cannot become an Example; the caller adds where the row is."""


def read_examples(
    path: str | Path,
    task: Task,
    *,
    skip_invalid: bool = False,
    offers_skip_invalid: bool = True,
    require_gold: bool = False,
    read_gold: bool = True,
    keep_repeated_texts: bool = False,
) -> ReadReport:
    """Read a .jsonl, .json, .csv or .parquet file into Examples, fields mapped by ``task.input``.

    Invalid rows raise one E105 error (count and first message) unless ``skip_invalid``, which
    drops them and lists them in ``ReadReport.skipped``; E105 tells the user to pass
    ``--skip-invalid`` unless ``offers_skip_invalid`` is False (a command without that option).
    ``require_gold`` makes a row without a gold answer invalid; ``read_gold=False`` leaves the
    gold field unread (every ``gold`` is None, whatever the field holds). Every row invalid
    with ``skip_invalid``: E109 naming the first; no row at all: E104. Unusable file: E101 (nothing there), E108 (a folder, a device…), E102, E103, E106, E107.
    ``keep_repeated_texts``: a row without an id whose text came before gets the id
    ``<hash>~2``, ``~3``, … instead of being invalid (the audit reports such repeats).
    """
    if require_gold and not read_gold:
        raise ValueError("require_gold needs read_gold")
    path = require_file(Path(path), Errors.E101, Errors.E108)
    suffix = path.suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        raise fail(Errors.E102, path=path, suffix=path.suffix)
    examples: list[Example] = []
    problems: list[str] = []
    first_seen: dict[str, str] = {}
    for where, row in reader(path, task):
        try:
            if isinstance(row, _InvalidRow):
                raise row
            example = _example_from_row(
                row, task, require_gold, read_gold, text_cells=suffix == ".csv"
            )
            if keep_repeated_texts and example.id == text_id(example.text):
                example = _numbered_repeat(example, first_seen)
            if example.id in first_seen:
                raise _InvalidRow(_duplicate_message(example, first_seen[example.id]))
        except _InvalidRow as problem:
            problems.append(f"{where}: {problem}")
            continue
        first_seen[example.id] = where
        examples.append(example)
    if problems and not skip_invalid:
        skip = SKIP_INVALID if offers_skip_invalid else ""
        raise fail(Errors.E105, path=path, count=len(problems), first=problems[0], skip=skip)
    if not examples and problems:  # all of them dropped: still say which was wrong and why
        raise fail(Errors.E109, path=path, count=len(problems), first=problems[0])
    if not examples:
        raise fail(Errors.E104, path=path)
    return ReadReport(examples=examples, skipped=problems)


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write ``records`` to ``path`` as JSON lines; return how many were written.

    The lines go to a temporary file in the same folder, which replaces ``path`` only once it is
    complete and synced: a crash or an exception from ``records`` leaves the old file untouched.
    """
    count = 0

    def write(out: TextIO) -> None:
        nonlocal count
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1

    _write_atomically(Path(path), write)
    return count


def write_json(path: str | Path, value: Any) -> None:
    """Write one JSON document to ``path`` atomically, as :func:`write_jsonl` does.

    Strict JSON: a NaN or infinity in ``value`` raises ``ValueError`` and leaves ``path`` as it was.
    """
    text = json.dumps(value, ensure_ascii=False, indent=1, allow_nan=False) + "\n"
    _write_atomically(Path(path), lambda out: out.write(text))


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, as :func:`write_jsonl` does."""
    _write_atomically(Path(path), lambda out: out.write(text))


def read_json_lines(path: str | Path) -> Iterator[tuple[str, Any]]:
    """Each non-blank line of a JSON-lines file as ``(file:line, parsed value)``.

    A missing file raises E101, a folder or device E108, bad UTF-8 E107 and a line that is not
    JSON E103 naming its line. For files that are not data rows (predictions, …); data rows go
    through :func:`read_examples`.
    """
    path = require_file(Path(path), Errors.E101, Errors.E108)
    for where, row in _jsonl_rows(path):
        if isinstance(row, _InvalidRow):
            raise fail(Errors.E103, where=where, detail=str(row))
        yield where, row


def _write_atomically(path: Path, write: Callable[[TextIO], object]) -> None:
    """Run ``write`` on a temporary file beside ``path``, sync it, then rename it over ``path``.

    An operating-system error (no space, permission, a folder in the way) leaves ``path`` as it
    was, removes the temporary file and is raised as the message naming ``path``
    (:func:`stillhouse.errors.from_os_error`)."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        make_folder(path.parent)
        with temporary.open("x", encoding="utf-8", newline="\n") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except OSError as error:
        _remove_quietly(temporary)
        raise from_os_error(error, path) from None
    except BaseException:
        _remove_quietly(temporary)
        raise


def make_folder(folder: Path) -> None:
    """``mkdir -p folder``; a file in the way is ENOTDIR (mkdir says EEXIST, "already exists",
    which would name the wrong problem)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as error:
        raise NotADirectoryError(errno.ENOTDIR, "a file is in the way", str(folder)) from error


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):  # it may never have been created (a folder in the way)
        path.unlink(missing_ok=True)


def data_fingerprint(examples: Sequence[Example]) -> str:
    """sha256 (hex) of the examples' ids, texts and gold answers, in order; meta is left out."""
    rows = [[example.id, example.text, example.gold] for example in examples]
    payload = json.dumps(rows, default=dataclasses.asdict, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def prodigy_record(
    example: Example,
    answer: Answer | None,
    kind: Kind,
    probs: dict[str, float] | None,
    annotator: str | None,
) -> dict[str, Any]:
    """A Prodigy-style JSONL record: text, the answer (``label``/``accept``/``spans``), meta.

    ``answer=None`` gives text and meta only. ``meta`` holds the example's meta plus its ``id``
    and, when given, the ``annotator``; ``probs`` are rounded to 6 digits.
    """
    record: dict[str, Any] = {"text": example.text}
    if answer is not None and kind == "classify":
        record["label"] = answer
        record["accept"] = [answer]
    elif answer is not None and kind == "multilabel":
        record["accept"] = list(answer)
    elif answer is not None:
        record["spans"] = answer_to_json(answer, "spans")
    record["meta"] = {**example.meta, "id": example.id}
    if annotator is not None:
        record["meta"]["annotator"] = annotator
    if probs is not None:
        record["probs"] = {label: round(float(p), 6) for label, p in probs.items()}
    return record


# Readers: each yields (where, row) per data row, ``where`` being ``file:line`` or ``file:row N``;
# a row that could not even be parsed comes as the _InvalidRow saying why.

_Rows = Iterator[tuple[str, Any]]


def _jsonl_rows(path: Path, task: Task | None = None) -> _Rows:
    for number, line in enumerate(_read_utf8(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            row = _InvalidRow(f"not valid JSON: {error.msg} at column {error.colno}")
        yield f"{path}:{number}", row


def _json_rows(path: Path, task: Task) -> _Rows:
    text = _read_utf8(path)
    if not text.strip():
        return
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as error:
        detail = f"not valid JSON: {error.msg} at column {error.colno}"
        raise fail(Errors.E103, where=f"{path}:{error.lineno}", detail=detail) from None
    if not isinstance(rows, list):
        detail = f"expected a JSON array of objects, got {_json_type(rows)}"
        raise fail(Errors.E103, where=path, detail=detail)
    for number, row in enumerate(rows, start=1):
        yield f"{path}:row {number}", row


def _csv_rows(path: Path, task: Task) -> _Rows:
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(_read_utf8(path), newline=""))
    try:
        header = next(reader, None)
        if header is None:
            return
        if task.input.text not in header:
            columns = ", ".join(f"`{name}`" for name in header) or "(none)"
            raise fail(Errors.E106, path=path, column=task.input.text, key="text", columns=columns)
        end = reader.line_num
        for values in reader:
            # A quoted cell may span lines: the row starts right after the previous one ended.
            start, end = end + 1, reader.line_num
            if not values:
                continue
            if len(values) != len(header):
                detail = f"has {len(values)} field(s) but the header has {len(header)}"
                yield f"{path}:{start}", _InvalidRow(detail)
            else:
                yield f"{path}:{start}", dict(zip(header, values, strict=True))
    except csv.Error as error:
        raise fail(
            Errors.E103, where=f"{path}:{reader.line_num}", detail=f"not valid CSV: {error}"
        ) from None


def _parquet_rows(path: Path, task: Task) -> _Rows:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as error:
        detail = f"not a readable Parquet file: {error}"
        raise fail(Errors.E103, where=path, detail=detail) from None
    for number, row in enumerate(rows, start=1):
        yield f"{path}:row {number}", row


_READERS: dict[str, Callable[[Path, Task], _Rows]] = {
    ".jsonl": _jsonl_rows,
    ".json": _json_rows,
    ".csv": _csv_rows,
    ".parquet": _parquet_rows,
}


def _read_utf8(path: Path) -> str:
    """The file's text without a leading BOM; bad UTF-8 raises E107 naming its byte and line."""
    data = path.read_bytes()
    if data.startswith(_UTF16_BOMS):
        detail = "the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8"
        raise fail(Errors.E107, path=path, offset=0, detail=detail)
    skip = len(_BOM) if data.startswith(_BOM) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = skip + error.start
        line = data[:offset].count(b"\n") + 1
        raise fail(Errors.E107, path=f"{path}:{line}", offset=offset, detail=error.reason) from None


# Rows to Examples. ``text_cells``: the row comes from CSV, so every value is a string.


def _example_from_row(
    row: Any, task: Task, require_gold: bool, read_gold: bool, *, text_cells: bool
) -> Example:
    fields = task.input
    if not isinstance(row, dict):
        raise _InvalidRow(f"expected an object with a `{fields.text}` field, got {_json_type(row)}")
    if fields.text not in row:
        raise _InvalidRow(f"missing text field `{fields.text}`")
    text = row[fields.text]
    if not isinstance(text, str):
        raise _InvalidRow(f"text field `{fields.text}` must be a string, got {_json_type(text)}")
    if not text.strip():
        what = "only whitespace" if text else "empty"
        raise _InvalidRow(f"text field `{fields.text}` is {what}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Only a JSON escape such as "\ud800" can get here; such text breaks hashing and storage.
        raise _InvalidRow(f"text field `{fields.text}` has an unpaired surrogate escape") from None
    value = row.get(fields.label) if read_gold else None
    if value is None or value == "":
        if require_gold:
            raise _InvalidRow(f"missing gold field `{fields.label}`")
        gold = None
    else:
        gold = _parse_gold(value, task, text, text_cells=text_cells)
    meta = {name: row[name] for name in fields.meta if row.get(name) is not None}
    return Example(id=_row_id(row.get(fields.id), text, fields.id), text=text, meta=meta, gold=gold)


def _row_id(value: Any, text: str, field: str) -> str:
    """The row's id as a string; a row without one gets :func:`text_id` of its text."""
    if value is None or value == "":
        return text_id(text)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _InvalidRow(
            f"id field `{field}` must be a string or a number, got {_json_type(value)}"
        )
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _parse_gold(value: Any, task: Task, text: str, *, text_cells: bool) -> Answer:
    field = task.input.label
    if task.kind == "classify":
        return _known_label(value, task)
    if task.kind == "multilabel":
        if text_cells:
            parts = value.split("|" if "|" in value else ",")
            value = [part.strip() for part in parts if part.strip()]
        if not isinstance(value, list):
            raise _InvalidRow(f"`{field}` must be a list of labels, got {_json_type(value)}")
        return tuple(dict.fromkeys(_known_label(label, task) for label in value))
    if text_cells:
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise _InvalidRow(f"`{field}` is not a JSON list of spans: {error.msg}") from None
    if not isinstance(value, list):
        raise _InvalidRow(f"`{field}` must be a list of spans, got {_json_type(value)}")
    spans = [_parse_span(item, number, task, text) for number, item in enumerate(value, start=1)]
    return tuple(sorted(spans, key=lambda span: (span.start, span.end)))


def _parse_span(item: Any, number: int, task: Task, text: str) -> Span:
    where = f"`{task.input.label}` span {number}"
    if not isinstance(item, dict):
        raise _InvalidRow(
            f"{where}: expected an object {{start, end, label}}, got {_json_type(item)}"
        )
    start, end = item.get("start"), item.get("end")
    if not (_is_int(start) and _is_int(end)):
        raise _InvalidRow(f"{where}: `start` and `end` must be integers")
    if not 0 <= start < end <= len(text):
        raise _InvalidRow(f"{where}: offsets {start}-{end} are not a range within the text")
    label = _known_label(item.get("label"), task)
    given = item.get("text")
    if given is not None and given != text[start:end]:
        raise _InvalidRow(f"{where}: text {given!r} is not text[{start}:{end}] {text[start:end]!r}")
    return Span(start, end, label, text[start:end])


def _known_label(value: Any, task: Task) -> str:
    """``value`` as one of the task's label names (an integer is read as its decimal string)."""
    if _is_int(value):
        value = str(value)
    if not isinstance(value, str):
        raise _InvalidRow(f"a label must be a string, got {_json_type(value)}")
    if value not in task.labels:
        known = task.label_names
        shown = ", ".join(known[:_LABELS_SHOWN])
        if len(known) > _LABELS_SHOWN:
            shown += f" and {len(known) - _LABELS_SHOWN} more"
        raise _InvalidRow(f"unknown label {value!r}; known labels: {shown}")
    return value


def _numbered_repeat(example: Example, first_seen: dict[str, str]) -> Example:
    """``example`` with the first id of ``<hash>``, ``<hash>~2``, … not yet in ``first_seen``."""
    number, candidate = 1, example.id
    while candidate in first_seen:
        number += 1
        candidate = f"{example.id}~{number}"
    return dataclasses.replace(example, id=candidate)


def _duplicate_message(example: Example, first: str) -> str:
    message = f"duplicate id {example.id!r} (first at {first})"
    if example.id == text_id(example.text):
        message += "; rows without an id get a hash of their text, so this text is repeated"
    return message


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    """The JSON name of a value's type, with a short excerpt: ``number 3``, ``null``, ``array``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
