"""Language mix with lingua: distribution per label and texts outside the task's languages."""

from __future__ import annotations

from audit_data import nusax_rows

from stillhouse.audit.language import check_language, detect_languages
from stillhouse.data.records import Example


def test_indonesian_texts_in_an_english_task_are_found() -> None:
    english = nusax_rows("english", count=60)
    indonesian = nusax_rows("indonesian", count=15)
    rows = english + indonesian
    examples = [Example(r["id"], r["text"]) for r in rows]
    labels = [r["label"] for r in rows]

    result = check_language(examples, labels, ["en"])

    flagged = {item.id for item in result.findings}
    indonesian_ids = {r["id"] for r in indonesian}
    assert len(flagged & indonesian_ids) >= 13
    assert len(flagged - indonesian_ids) <= 3
    assert result.metrics["distribution"]["en"] >= 57
    assert sum(result.metrics["per_label"]["positive"].values()) == labels.count("positive")
    assert not result.metrics["fast_mode"]


def test_languages_lingua_does_not_know_are_reported() -> None:
    codes, unsupported = detect_languages(["Aku seneng banget"], ["jv", "id"])
    assert unsupported == ["jv"] and len(codes) == 1


def test_fast_mode_agrees_on_clear_texts() -> None:
    texts = [r["text"] for r in nusax_rows("english", count=30)]
    accurate, _ = detect_languages(texts, ["en"], fast=False)
    fast, _ = detect_languages(texts, ["en"], fast=True)
    assert sum(a == b for a, b in zip(accurate, fast, strict=True)) >= 27
