"""PII with presidio (pattern recognisers + the installed spaCy model) and redaction."""

from __future__ import annotations

import pytest
from audit_data import presidio_records

from stillhouse.audit.pii import check_pii, redact
from stillhouse.data.records import Example
from stillhouse.guard.pii_recognizers import spacy_model_path


def test_the_spacy_model_is_the_installed_package() -> None:
    folder = spacy_model_path()
    assert (folder / "config.cfg").is_file() and "en_core_web_sm" in folder.name


@pytest.mark.slow
def test_presidio_finds_planted_entities_with_offsets_and_redacts_them() -> None:
    records = presidio_records(40)
    examples = [Example(f"p{i}", r["full_text"]) for i, r in enumerate(records)]
    examples.append(Example("mail", "Write to jane.doe@example.com or call 212-555-0187 today."))
    examples.append(Example("clean", "The card arrived on time."))

    result, hits = check_pii(examples)

    by_id: dict[str, list] = {}
    for hit in hits:
        by_id.setdefault(hit.id, []).append(hit)
    texts = {example.id: example.text for example in examples}
    assert all(texts[hit.id][hit.start : hit.end] == hit.value for hit in hits)
    assert {h.entity for h in by_id["mail"]} >= {"EMAIL_ADDRESS", "PHONE_NUMBER"}
    assert "clean" not in by_id
    assert result.metrics["by_entity"]["PERSON"] >= 10
    # en_core_web_sm finds about half of the synthetic (often non-English) names.
    planted = [
        (f"p{i}", s)
        for i, r in enumerate(records)
        for s in r["spans"]
        if s["entity_type"] == "PERSON"
    ]
    found = sum(
        any(
            h.entity == "PERSON" and h.start < s["end_position"] and s["start_position"] < h.end
            for h in by_id.get(i, [])
        )
        for i, s in planted
    )
    assert found / len(planted) >= 0.4
    redacted = redact(examples[-2].text, by_id["mail"])
    assert "jane.doe@example.com" not in redacted and "<EMAIL_ADDRESS>" in redacted
