"""Reading data files into Examples, writing JSONL atomically, fingerprints and Prodigy records."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stillhouse.data.io import (
    ReadReport,
    data_fingerprint,
    prodigy_record,
    read_examples,
    read_json_lines,
    write_jsonl,
)
from stillhouse.data.records import Example, Span, text_id
from stillhouse.errors import StillhouseError
from stillhouse.task import Task, parse_task

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"

SENTIMENT = {"pos": "Positive.", "neg": "Negative."}


def make_task(
    tmp_path: Path,
    kind: str = "classify",
    labels: dict[str, str] | None = None,
    **input_fields: Any,
) -> Task:
    data: dict[str, Any] = {"name": "test", "kind": kind, "labels": labels or SENTIMENT}
    if input_fields:
        data["input"] = input_fields
    return parse_task(data, tmp_path / "task.toml")


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` in the format named by the suffix (CSV: columns of the first row)."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif path.suffix == ".csv":
        with path.open("w", encoding="utf-8", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_error(path: Path, task: Task, **options: Any) -> StillhouseError:
    with pytest.raises(StillhouseError) as caught:
        read_examples(path, task, **options)
    return caught.value


THREE_ROWS = [
    {"id": "r1", "text": "I love it.", "label": "pos", "lang": "en"},
    {"id": "r2", "text": "  Terrible, never again.  ", "label": "neg", "lang": "en"},
    {"id": "r3", "text": "C'est génial — 10/10 👍", "label": "pos", "lang": "fr"},
]


# --- formats -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_every_format_reads_the_same_rows_into_equal_examples(tmp_path: Path, suffix: str) -> None:
    task = make_task(tmp_path, meta=["lang"])
    path = write_rows(tmp_path / f"data{suffix}", THREE_ROWS)

    report = read_examples(path, task)

    assert report == ReadReport(
        examples=[
            Example(id=row["id"], text=row["text"], meta={"lang": row["lang"]}, gold=row["label"])
            for row in THREE_ROWS
        ],
        skipped=[],
    )


def test_suffix_is_case_insensitive(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "data.jsonl", THREE_ROWS)
    upper = path.rename(tmp_path / "DATA.JSONL")
    assert len(read_examples(upper, make_task(tmp_path)).examples) == 3


def test_missing_file_is_E101(tmp_path: Path) -> None:
    error = read_error(tmp_path / "nope.jsonl", make_task(tmp_path))
    assert error.code == "E101"
    assert "nope.jsonl" in error.message


def test_unknown_suffix_is_E102(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("hello\n", encoding="utf-8")
    error = read_error(path, make_task(tmp_path))
    assert error.code == "E102"
    assert "`.txt`" in error.message


def test_texts_are_kept_exactly_and_a_leading_bom_is_ignored(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + json.dumps({"text": "  padded\t"}).encode() + b"\n")
    csv_path = tmp_path / "bom.csv"
    csv_path.write_bytes(b'\xef\xbb\xbftext,label\r\n"  two\r\nlines ",pos\r\n')

    assert read_examples(jsonl, task).examples[0].text == "  padded\t"
    assert read_examples(csv_path, task).examples[0].text == "  two\r\nlines "


def test_jsonl_ignores_blank_lines_and_accepts_crlf(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"text": "a"}\r\n\r\n   \n{"text": "b"}\r\n')
    assert [e.text for e in read_examples(path, make_task(tmp_path)).examples] == ["a", "b"]


def test_a_one_megabyte_text_is_read_intact(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    big = ("0123456789 abcdéf\n" * 60_000)[:1_000_000]
    for path in (tmp_path / "big.jsonl", tmp_path / "big.csv"):
        write_rows(path, [{"text": big, "label": "pos"}, {"text": "small", "label": "neg"}])
        examples = read_examples(path, task).examples
        assert examples[0].text == big
        assert len(examples) == 2


# --- ids and meta --------------------------------------------------------------------------


def test_given_ids_are_kept_and_numbers_become_strings(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"id": "abc", "text": "one"},
        {"id": 7, "text": "two"},
        {"id": 8.0, "text": "three"},
    ]
    path = write_rows(tmp_path / "data.json", rows)
    assert [e.id for e in read_examples(path, make_task(tmp_path)).examples] == ["abc", "7", "8"]


def test_rows_without_an_id_get_a_stable_hash_of_their_text(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    first = write_rows(tmp_path / "a.jsonl", [{"text": "same text"}, {"text": "x", "id": ""}])
    second = write_rows(tmp_path / "b.csv", [{"id": "", "text": "same text"}])

    a = read_examples(first, task).examples
    b = read_examples(second, task).examples

    assert a[0].id == b[0].id == text_id("same text")
    assert a[1].id == text_id("x")


def test_the_id_field_follows_the_task_mapping(tmp_path: Path) -> None:
    task = make_task(tmp_path, id="uid", text="body", label="gold")
    path = write_rows(tmp_path / "data.jsonl", [{"uid": 1, "id": "ignored", "body": "t"}])
    assert read_examples(path, task).examples == [Example(id="1", text="t")]


def test_only_listed_meta_fields_are_copied_when_present(tmp_path: Path) -> None:
    task = make_task(tmp_path, meta=["lang", "split"])
    rows: list[dict[str, Any]] = [
        {"text": "a", "lang": "en", "split": "test", "source": "web", "extra": 1},
        {"text": "b", "lang": "de", "source": "web"},
        {"text": "c", "lang": None},
    ]
    examples = read_examples(write_rows(tmp_path / "m.jsonl", rows), task).examples
    assert [e.meta for e in examples] == [{"lang": "en", "split": "test"}, {"lang": "de"}, {}]


def test_gold_is_optional_per_row(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"text": "a", "label": "pos"},
        {"text": "b"},
        {"text": "c", "label": None},
    ]
    examples = read_examples(write_rows(tmp_path / "g.jsonl", rows), make_task(tmp_path)).examples
    assert [e.gold for e in examples] == ["pos", None, None]


def test_csv_empty_label_cell_means_no_gold(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "g.csv", "text,label", "a,pos", "b,")
    assert [e.gold for e in read_examples(path, make_task(tmp_path)).examples] == ["pos", None]


def test_integer_labels_match_their_decimal_names(tmp_path: Path) -> None:
    task = make_task(tmp_path, labels={"0": "Negative.", "1": "Positive."})
    path = write_rows(
        tmp_path / "num.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": 0}]
    )
    assert [e.gold for e in read_examples(path, task).examples] == ["1", "0"]


# --- multilabel and spans ------------------------------------------------------------------

TOPICS = {"price": "About price.", "service": "About service.", "food": "About food."}


def test_multilabel_gold_is_a_list_in_json_formats(tmp_path: Path) -> None:
    task = make_task(tmp_path, kind="multilabel", labels=TOPICS)
    rows = [
        {"text": "a", "label": ["price", "food"]},
        {"text": "b", "label": []},
        {"text": "c", "label": ["service", "service"]},
    ]
    for suffix in (".jsonl", ".parquet"):
        examples = read_examples(write_rows(tmp_path / f"ml{suffix}", rows), task).examples
        assert [e.gold for e in examples] == [("price", "food"), (), ("service",)]


def test_multilabel_gold_in_csv_is_separated_by_bar_or_comma(tmp_path: Path) -> None:
    task = make_task(tmp_path, kind="multilabel", labels=TOPICS)
    path = write_lines(
        tmp_path / "ml.csv", "text,label", 'a,"price|food"', 'b,"service, food"', "c,price", "d,"
    )
    examples = read_examples(path, task).examples
    assert [e.gold for e in examples] == [("price", "food"), ("service", "food"), ("price",), None]


def test_multilabel_gold_must_be_a_list_outside_csv(tmp_path: Path) -> None:
    task = make_task(tmp_path, kind="multilabel", labels=TOPICS)
    path = write_rows(tmp_path / "ml.jsonl", [{"text": "a", "label": "price|food"}])
    error = read_error(path, task)
    assert error.code == "E105"
    assert f"{path}:1: `label` must be a list of labels, got string 'price|food'" in error.message


ENTITIES = {"PER": "A person.", "LOC": "A place."}
SPAN_TEXT = "Ada Lovelace lived in London."


def test_spans_gold_becomes_sorted_span_tuples(tmp_path: Path) -> None:
    task = make_task(tmp_path, kind="spans", labels=ENTITIES)
    gold = [
        {"start": 22, "end": 28, "label": "LOC"},
        {"start": 0, "end": 12, "label": "PER", "text": "Ada Lovelace"},
    ]
    expected = (Span(0, 12, "PER", "Ada Lovelace"), Span(22, 28, "LOC", "London"))
    for suffix in (".jsonl", ".json"):
        path = write_rows(tmp_path / f"s{suffix}", [{"text": SPAN_TEXT, "label": gold}])
        assert read_examples(path, task).examples[0].gold == expected
    csv_path = write_rows(tmp_path / "s.csv", [{"text": SPAN_TEXT, "label": json.dumps(gold)}])
    assert read_examples(csv_path, task).examples[0].gold == expected


@pytest.mark.parametrize(
    ("gold", "fragment"),
    [
        ("PER", "`label` must be a list of spans, got string 'PER'"),
        (["PER"], "`label` span 1: expected an object {start, end, label}, got string 'PER'"),
        ([{"start": "0", "end": 3, "label": "PER"}], "`start` and `end` must be integers"),
        ([{"start": 0, "end": 99, "label": "PER"}], "offsets 0-99 are not a range within the text"),
        ([{"start": 5, "end": 5, "label": "PER"}], "offsets 5-5 are not a range within the text"),
        ([{"start": 0, "end": 3, "label": "ORG"}], "unknown label 'ORG'; known labels: PER, LOC"),
        ([{"start": 0, "end": 3, "label": "PER", "text": "Bob"}], "text 'Bob' is not text[0:3]"),
    ],
)
def test_malformed_spans_are_invalid_rows(tmp_path: Path, gold: Any, fragment: str) -> None:
    task = make_task(tmp_path, kind="spans", labels=ENTITIES)
    path = write_lines(
        tmp_path / "s.jsonl",
        json.dumps({"text": SPAN_TEXT}),
        json.dumps({"text": SPAN_TEXT, "id": "bad", "label": gold}),
    )
    error = read_error(path, task)
    assert error.code == "E105"
    assert f"{path}:2: " in error.message
    assert fragment in error.message


# --- invalid rows --------------------------------------------------------------------------

GOOD = json.dumps({"text": "fine", "label": "pos"})


@pytest.mark.parametrize(
    ("bad_line", "fragment"),
    [
        ('{"text": "broken",', "not valid JSON: Expecting property name enclosed in double quotes"),
        ("[1, 2]", "expected an object with a `text` field, got array"),
        ('"just a string"', "expected an object with a `text` field, got string 'just a string'"),
        ('{"label": "pos"}', "missing text field `text`"),
        ('{"text": 42}', "text field `text` must be a string, got number 42"),
        ('{"text": null}', "text field `text` must be a string, got null"),
        ('{"text": ["a", "b"]}', "text field `text` must be a string, got array"),
        ('{"text": ""}', "text field `text` is empty"),
        ('{"text": " \\t\\n "}', "text field `text` is only whitespace"),
        ('{"text": "x", "label": "meh"}', "unknown label 'meh'; known labels: pos, neg"),
        ('{"text": "x", "label": ["pos"]}', "a label must be a string, got array"),
        ('{"text": "x", "id": ["a"]}', "id field `id` must be a string or a number, got array"),
        ('{"text": "bad \\ud800 escape"}', "text field `text` has an unpaired surrogate escape"),
    ],
)
def test_each_invalid_jsonl_row_names_its_line(
    tmp_path: Path, bad_line: str, fragment: str
) -> None:
    task = make_task(tmp_path)
    path = write_lines(tmp_path / "data.jsonl", GOOD, "", bad_line, GOOD.replace("fine", "ok"))

    error = read_error(path, task)
    assert error.code == "E105"
    assert f"{path}: 1 invalid row(s); first: {path}:3: {fragment}" in error.message

    report = read_examples(path, task, skip_invalid=True)
    assert [e.text for e in report.examples] == ["fine", "ok"]
    assert len(report.skipped) == 1
    assert report.skipped[0].startswith(f"{path}:3: {fragment}")


def test_duplicate_ids_name_the_first_line(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    path = write_lines(
        tmp_path / "dup.jsonl",
        '{"id": "a", "text": "one"}',
        '{"id": "b", "text": "two"}',
        '{"id": "a", "text": "three"}',
    )
    error = read_error(path, task)
    assert error.code == "E105"
    assert f"{path}:3: duplicate id 'a' (first at {path}:1)" in error.message

    report = read_examples(path, task, skip_invalid=True)
    assert [e.text for e in report.examples] == ["one", "two"]
    assert len(report.skipped) == 1


def test_a_repeated_text_without_ids_is_a_duplicate(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "dup.jsonl", '{"text": "same"}', '{"text": "x"}', '{"text": "same"}'
    )
    error = read_error(path, make_task(tmp_path))
    assert f"{path}:3: duplicate id '{text_id('same')}' (first at {path}:1)" in error.message
    assert "this text is repeated" in error.message


def test_require_gold_makes_a_missing_label_invalid(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    path = write_lines(tmp_path / "g.jsonl", GOOD, '{"text": "no gold"}')
    assert len(read_examples(path, task).examples) == 2

    error = read_error(path, task, require_gold=True)
    assert f"{path}:2: missing gold field `label`" in error.message
    report = read_examples(path, task, require_gold=True, skip_invalid=True)
    assert len(report.examples) == 1
    assert len(report.skipped) == 1


def test_unknown_label_lists_at_most_ten_known_labels(tmp_path: Path) -> None:
    labels = {f"l{i:02d}": "" for i in range(14)}
    task = make_task(tmp_path, labels=labels)
    path = write_lines(tmp_path / "many.jsonl", '{"text": "x", "label": "zzz"}')
    error = read_error(path, task)
    shown = ", ".join(f"l{i:02d}" for i in range(10))
    assert f"unknown label 'zzz'; known labels: {shown} and 4 more" in error.message


def test_without_skip_invalid_one_error_counts_all_bad_rows(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", GOOD, '{"text": ""}', "oops", '{"text": 1}')
    error = read_error(path, make_task(tmp_path))
    assert error.code == "E105"
    assert f"3 invalid row(s); first: {path}:2: text field `text` is empty" in error.message
    assert read_examples(path, make_task(tmp_path), skip_invalid=True).skipped == [
        f"{path}:2: text field `text` is empty",
        f"{path}:3: not valid JSON: Expecting value at column 1",
        f"{path}:4: text field `text` must be a string, got number 1",
    ]


def test_invalid_csv_rows_name_their_physical_line(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    path = write_lines(
        tmp_path / "data.csv",
        "id,text,label",
        '1,"a text',
        'over two lines",pos',
        "2,,pos",
        "",
        "3,fine,meh",
        "4,x,pos,extra",
        "5,ok,",
    )
    report = read_examples(path, task, skip_invalid=True)
    assert [e.id for e in report.examples] == ["1", "5"]
    assert report.skipped == [
        f"{path}:4: text field `text` is empty",
        f"{path}:6: unknown label 'meh'; known labels: pos, neg",
        f"{path}:7: has 4 field(s) but the header has 3",
    ]
    error = read_error(path, task)
    assert error.code == "E105"
    assert f"3 invalid row(s); first: {path}:4: " in error.message


@pytest.mark.parametrize("suffix", [".json", ".parquet"])
def test_invalid_rows_in_json_and_parquet_name_their_row(tmp_path: Path, suffix: str) -> None:
    rows = [
        {"id": "a", "text": "one", "label": "pos"},
        {"id": "b", "text": "two", "label": "neg"},
        {"id": "c", "text": "three", "label": "meh"},
    ]
    path = write_rows(tmp_path / f"data{suffix}", rows)
    error = read_error(path, make_task(tmp_path))
    assert error.code == "E105"
    assert f"first: {path}:row 3: unknown label 'meh'" in error.message
    report = read_examples(path, make_task(tmp_path), skip_invalid=True)
    assert len(report.examples) == 2
    assert len(report.skipped) == 1


def test_json_array_rows_that_are_not_objects_are_invalid(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text('[{"text": "a"}, 5, null]', encoding="utf-8")
    report = read_examples(path, make_task(tmp_path), skip_invalid=True)
    assert report.skipped == [
        f"{path}:row 2: expected an object with a `text` field, got number 5",
        f"{path}:row 3: expected an object with a `text` field, got null",
    ]


def test_parquet_without_the_text_column_reports_every_row(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "d.parquet", [{"body": "a"}, {"body": "b"}])
    error = read_error(path, make_task(tmp_path))
    assert f"2 invalid row(s); first: {path}:row 1: missing text field `text`" in error.message


# --- unusable files ------------------------------------------------------------------------


def test_csv_without_the_text_column_is_E106(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.csv", "id,body,label", "1,hello,pos")
    error = read_error(path, make_task(tmp_path), skip_invalid=True)
    assert error.code == "E106"
    assert "column `text`" in error.message
    assert "[input].text" in error.message
    assert "`id`, `body`, `label`" in error.message


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_invalid_utf8_is_E107_with_offset_and_line(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"bad{suffix}"
    first = b"text,label\n" if suffix == ".csv" else b'{"text": "ok"}\n'
    second = b"also ok,pos\n" if suffix == ".csv" else b'{"text": "also ok"}\n'
    path.write_bytes(first + second + b'{"text": "caf\xe9"}\n')
    offset = len(first + second) + len(b'{"text": "caf')

    for skip in (False, True):
        error = read_error(path, make_task(tmp_path), skip_invalid=skip)
        assert error.code == "E107"
        assert f"{path}:3: not valid UTF-8 at byte {offset}" in error.message


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.jsonl", ""),
        ("blank.jsonl", "\n  \n\n"),
        ("empty.json", ""),
        ("array.json", "[]"),
        ("empty.csv", ""),
        ("header.csv", "text,label\n"),
    ],
)
def test_a_file_without_rows_is_E104(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert read_error(path, make_task(tmp_path)).code == "E104"


def test_empty_parquet_is_E104(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), path)
    assert read_error(path, make_task(tmp_path)).code == "E104"


def test_all_rows_skipped_is_E109_naming_the_first(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", '{"text": ""}', "{}")
    error = read_error(path, make_task(tmp_path), skip_invalid=True)
    assert error.code == "E109"
    assert f"{path}: every row is invalid (2); first: {path}:1: " in error.message


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        (
            "broken.json",
            '[{"text": "a"},\n oops]',
            "broken.json:2: not valid JSON: Expecting value",
        ),
        ("object.json", '{"text": "a"}', "expected a JSON array of objects, got object"),
        ("fake.parquet", "not parquet at all", "not a readable Parquet file"),
    ],
)
def test_a_file_that_is_not_its_format_is_E103(
    tmp_path: Path, name: str, content: str, fragment: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    error = read_error(path, make_task(tmp_path), skip_invalid=True)
    assert error.code == "E103"
    assert fragment in error.message


# --- writing -------------------------------------------------------------------------------


def test_write_jsonl_round_trips_through_read_examples(tmp_path: Path) -> None:
    path = tmp_path / "out" / "data.jsonl"
    records = [{"id": row["id"], "text": row["text"], "label": row["label"]} for row in THREE_ROWS]

    assert write_jsonl(path, iter(records)) == 3

    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == records
    examples = read_examples(path, make_task(tmp_path)).examples
    assert [(e.id, e.text, e.gold) for e in examples] == [
        (r["id"], r["text"], r["label"]) for r in records
    ]
    assert "👍" in lines[2]  # written as UTF-8, not \u escapes


def test_write_jsonl_leaves_the_old_file_intact_when_records_fail(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"old": true}\n', encoding="utf-8")

    def records() -> Iterator[dict[str, Any]]:
        yield {"n": 1}
        yield {"n": 2}
        raise RuntimeError("source failed midway")

    with pytest.raises(RuntimeError, match="midway"):
        write_jsonl(path, records())

    assert path.read_text(encoding="utf-8") == '{"old": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["data.jsonl"]


def test_write_jsonl_of_nothing_writes_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    assert write_jsonl(path, []) == 0
    assert path.read_bytes() == b""


# --- fingerprint and Prodigy records -------------------------------------------------------


def test_data_fingerprint_covers_ids_texts_and_gold_but_not_meta() -> None:
    base = [Example("a", "one", {"lang": "en"}, "pos"), Example("b", "two", {}, None)]
    spans = [Example("c", "Ada", {}, (Span(0, 3, "PER", "Ada"),))]

    fingerprint = data_fingerprint(base)
    assert len(fingerprint) == 64
    assert data_fingerprint(list(base)) == fingerprint
    assert data_fingerprint([Example("a", "one", {}, "pos"), base[1]]) == fingerprint
    assert data_fingerprint([Example("a", "one!", {}, "pos"), base[1]]) != fingerprint
    assert data_fingerprint([Example("a", "one", {}, "neg"), base[1]]) != fingerprint
    assert data_fingerprint([Example("z", "one", {}, "pos"), base[1]]) != fingerprint
    assert data_fingerprint(spans) != data_fingerprint([Example("c", "Ada", {}, ())])


def test_prodigy_record_for_classify_with_probs_and_annotator() -> None:
    example = Example("e1", "Great!", {"lang": "en"}, "pos")
    record = prodigy_record(example, "pos", "classify", {"pos": 0.91234567, "neg": 0.0876}, "gold")
    assert record == {
        "text": "Great!",
        "label": "pos",
        "accept": ["pos"],
        "meta": {"lang": "en", "id": "e1", "annotator": "gold"},
        "probs": {"pos": 0.912346, "neg": 0.0876},
    }
    assert example.meta == {"lang": "en"}  # the example's meta is not modified


def test_prodigy_record_for_multilabel_and_spans() -> None:
    example = Example("e2", SPAN_TEXT)
    assert prodigy_record(example, ("price", "food"), "multilabel", None, None) == {
        "text": SPAN_TEXT,
        "accept": ["price", "food"],
        "meta": {"id": "e2"},
    }
    spans = (Span(0, 12, "PER", "Ada Lovelace"), Span(22, 28, "LOC", "London"))
    assert prodigy_record(example, spans, "spans", None, "human:kim") == {
        "text": SPAN_TEXT,
        "spans": [
            {"start": 0, "end": 12, "label": "PER", "text": "Ada Lovelace"},
            {"start": 22, "end": 28, "label": "LOC", "text": "London"},
        ],
        "meta": {"id": "e2", "annotator": "human:kim"},
    }


def test_prodigy_record_without_an_answer_has_no_label_keys() -> None:
    record = prodigy_record(Example("e3", "hi"), None, "classify", None, None)
    assert record == {"text": "hi", "meta": {"id": "e3"}}


# --- real data -----------------------------------------------------------------------------


def test_reads_the_banking77_test_split(tmp_path: Path) -> None:
    folder = DATASETS / "banking77"
    if not (folder / "test.csv").is_file():
        pytest.skip(f"banking77 is not in {folder} (the shared datasets folder is absent)")
    categories = json.loads((folder / "categories.json").read_text(encoding="utf-8"))
    task = make_task(
        tmp_path, labels={name: "" for name in categories}, text="text", label="category"
    )

    report = read_examples(folder / "test.csv", task, require_gold=True)

    assert len(report.examples) == 3080
    assert report.skipped == []
    assert {e.gold for e in report.examples} == set(categories)
    assert report.examples[0].text == "How do I locate my card?"


# --- what is at the path, byte-order marks, the gold field left unread, E105's advice -------


@pytest.mark.parametrize("kind", ["folder", "device"])
def test_a_data_path_that_is_not_a_regular_file_says_what_it_is(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "data.jsonl" if kind == "folder" else Path("/dev/null")
    if kind == "folder":
        path.mkdir()
    what = "a folder" if kind == "folder" else "a device file"

    for read in (
        lambda: read_examples(path, make_task(tmp_path)),
        lambda: list(read_json_lines(path)),
    ):
        with pytest.raises(StillhouseError) as caught:
            read()
        assert caught.value.code == "E108"
        assert f"Data file {path} is {what}, not a regular file" in caught.value.message
        assert "does not exist" not in caught.value.message


def test_a_utf8_bom_is_ignored_in_json_arrays_and_json_lines_files(tmp_path: Path) -> None:
    array = tmp_path / "bom.json"
    array.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"text": "hi", "label": "pos"}]).encode())
    predictions = tmp_path / "preds.jsonl"
    predictions.write_bytes(b'\xef\xbb\xbf{"id": "1", "label": "pos"}\n')

    assert read_examples(array, make_task(tmp_path)).examples[0].gold == "pos"
    assert [row for _, row in read_json_lines(predictions)] == [{"id": "1", "label": "pos"}]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
def test_a_utf16_data_file_is_named_as_such(tmp_path: Path, suffix: str) -> None:
    path = write_rows(tmp_path / f"data{suffix}", THREE_ROWS)
    path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16"))  # with its BOM

    error = read_error(path, make_task(tmp_path))

    assert error.code == "E107"
    assert "UTF-16" in error.message and "save it as UTF-8" in error.message


def test_read_gold_false_ignores_the_label_field_whatever_it_holds(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    path = write_lines(
        tmp_path / "texts.jsonl",
        '{"id": "a", "text": "one", "label": "no-such-label"}',
        '{"id": "b", "text": "two", "label": {"not": "a label"}}',
        '{"id": "c", "text": "three", "label": "pos"}',
    )
    assert read_error(path, task).code == "E105"  # read as data with gold, they are invalid

    report = read_examples(path, task, read_gold=False)

    assert [(e.id, e.text, e.gold) for e in report.examples] == [
        ("a", "one", None),
        ("b", "two", None),
        ("c", "three", None),
    ]


def test_read_gold_false_still_checks_texts_and_ids(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "texts.jsonl",
        '{"id": "a", "text": "one", "label": "??"}',
        '{"id": "b", "text": ""}',
        '{"id": "a", "text": "two"}',
    )

    error = read_error(path, make_task(tmp_path), read_gold=False)

    assert error.code == "E105"
    assert f"2 invalid row(s); first: {path}:2: text field `text` is empty" in error.message
    skipped = read_examples(path, make_task(tmp_path), read_gold=False, skip_invalid=True).skipped
    assert skipped[1].startswith(f"{path}:3: duplicate id 'a'")


def test_e105_suggests_skip_invalid_only_to_commands_that_have_it(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", GOOD, '{"text": ""}')

    offered = read_error(path, make_task(tmp_path))
    plain = read_error(path, make_task(tmp_path), offers_skip_invalid=False)

    assert offered.message == (
        f"{path}: 1 invalid row(s); first: {path}:2: text field `text` is empty. "
        "Fix them or pass --skip-invalid to drop them."
    )
    assert plain.code == "E105"
    assert plain.message == (
        f"{path}: 1 invalid row(s); first: {path}:2: text field `text` is empty. Fix them."
    )


@pytest.mark.parametrize("command", ["evaluate", "train"])
def test_commands_without_skip_invalid_do_not_suggest_it(
    tmp_path: Path, run_cli, command: str
) -> None:
    (tmp_path / "task.toml").write_text(
        'name = "t"\n[labels]\npos = "P."\nneg = "N."\n', encoding="utf-8"
    )
    write_lines(
        tmp_path / "data.jsonl",
        '{"id": "1", "text": "fine", "label": "pos"}',
        '{"id": "2", "text": ""}',
    )
    write_lines(tmp_path / "preds.jsonl", '{"id": "1", "label": "pos"}')
    args = {
        "evaluate": ["--test", "data.jsonl", "--system", "p=preds:preds.jsonl", "--out", "report"],
        "train": ["--data", "data.jsonl", "--out", "model"],
    }[command]

    result = run_cli(tmp_path, command, "--task", "task.toml", *args)

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "[E105]" in result.stderr and "data.jsonl:2: text field `text` is empty" in result.stderr
    assert "Fix them." in result.stderr and "--skip-invalid" not in result.stderr
