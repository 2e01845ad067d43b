"""Exact duplicates after NFKC/case/whitespace normalisation, conflicting labels apart."""

from __future__ import annotations

from audit_data import nusax_rows

from stillhouse.audit.duplicates import check_duplicates, exact_duplicate_groups
from stillhouse.audit.normalize import normalize_text
from stillhouse.data.records import Example


def examples_of(rows: list[dict[str, str]]) -> tuple[list[Example], list[str | None]]:
    return [Example(r["id"], r["text"]) for r in rows], [r["label"] for r in rows]


def test_normalisation_folds_width_case_and_whitespace() -> None:
    assert normalize_text("  Ｔｈｅ   FOOD\twas\n great ") == "the food was great"
    assert normalize_text("ﬁne") == "fine"  # NFKC ligature
    assert normalize_text("Straße") == normalize_text("STRASSE")


def test_planted_copies_form_groups_and_conflicts_come_first() -> None:
    rows = nusax_rows("english", count=200)
    original, other = rows[10], rows[20]
    rows.append(
        {"id": "copy-1", "text": "  " + original["text"].upper() + " ", "label": original["label"]}
    )
    rows.append(
        {"id": "copy-2", "text": original["text"].replace(" ", "  "), "label": original["label"]}
    )
    flipped = "negative" if other["label"] != "negative" else "positive"
    rows.append({"id": "copy-3", "text": other["text"], "label": flipped})
    examples, labels = examples_of(rows)

    groups = exact_duplicate_groups(examples, labels)

    assert [g.ids for g in groups] == [
        [other["id"], "copy-3"],
        [original["id"], "copy-1", "copy-2"],
    ]
    assert groups[0].conflicting and not groups[1].conflicting
    result = check_duplicates(examples, labels)
    assert result.status == "problem"
    assert result.metrics["redundant_rows"] == 3
    assert result.metrics["conflicting_groups"] == 1


def test_distinct_data_has_no_duplicates() -> None:
    examples, labels = examples_of(nusax_rows("english", count=300))
    result = check_duplicates(examples, labels)
    assert result.status == "ok" and result.count == 0 and result.findings == ()
