"""Real data for the multilabel and spans train tests.

- **presidio_pii** (microsoft/presidio-research, MIT; synthetic people and addresses): texts
  with character-offset PII spans of 17 types. Spans as given, kept to a few frequent types.
  The *multilabel* set is derived from it honestly, with no hand labelling: a text's labels are
  the entity types among ``TYPES`` that its gold spans contain ("which kinds of PII does this
  text hold"), so the labels are exactly as right as presidio's spans.
- **wnut17** (CC BY 4.0; emerging entities in tweets): CoNLL two-column BIO, converted here to
  a text (tokens joined by single spaces) with character spans.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from train_data import REPO

DATASETS = REPO.parent / "shared" / "datasets"
PRESIDIO = DATASETS / "presidio_pii" / "synth_dataset_v2.json"
WNUT17 = DATASETS / "wnut17" / "wnut17train.conll"
# the presidio types in at least 30 of the first 400 texts
TYPES = ("PERSON", "STREET_ADDRESS", "GPE", "ORGANIZATION", "CREDIT_CARD", "DATE_TIME")


def presidio_records(start: int, stop: int) -> list[dict[str, Any]]:
    records = json.loads(PRESIDIO.read_text(encoding="utf-8"))
    return [{"id": f"p{i:04d}", **records[i]} for i in range(start, stop)]


def presidio_spans(start: int, stop: int, types: tuple[str, ...] = TYPES) -> list[dict[str, Any]]:
    """``{"id", "text", "spans": [{"start", "end", "label"}]}``, spans of ``types`` only."""
    rows = []
    for record in presidio_records(start, stop):
        spans = sorted(
            (
                {"start": s["start_position"], "end": s["end_position"], "label": s["entity_type"]}
                for s in record["spans"]
                if s["entity_type"] in types
            ),
            key=lambda span: (span["start"], span["end"]),
        )
        rows.append({"id": record["id"], "text": record["full_text"], "spans": spans})
    return rows


def presidio_multilabel(start: int, stop: int) -> list[dict[str, Any]]:
    """``{"id", "text", "labels"}``: the types of ``TYPES`` the text's gold spans contain."""
    return [
        {
            "id": row["id"],
            "text": row["text"],
            "labels": sorted({span["label"] for span in row["spans"]}),
        }
        for row in presidio_spans(start, stop)
    ]


def task_text(name: str, kind: str, field: str, labels: tuple[str, ...]) -> str:
    lines = "\n".join(f'{label} = "{label.lower()}"' for label in labels)
    return f'name = "{name}"\nkind = "{kind}"\n[input]\nlabel = "{field}"\n[labels]\n{lines}\n'


def read_conll(path: Path) -> list[list[tuple[str, str]]]:
    """Sentences as lists of ``(token, tag)``; blank lines separate sentences."""
    sentences: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if current:
                sentences.append(current)
            current = []
            continue
        token, tag = line.rsplit("\t", 1) if "\t" in line else line.rsplit(" ", 1)
        current.append((token, tag.strip()))
    if current:
        sentences.append(current)
    return sentences


def bio_to_spans(sentence: list[tuple[str, str]]) -> dict[str, Any]:
    """The sentence as ``{"text", "spans"}``: tokens joined by one space; a B- tag (or an I-
    tag after another type or O, as conlleval reads it) opens an entity, I- of its type extends
    it."""
    text_parts: list[str] = []
    spans: list[dict[str, Any]] = []
    offset = 0
    open_span: dict[str, Any] | None = None
    for token, tag in sentence:
        start = offset
        end = start + len(token)
        text_parts.append(token)
        offset = end + 1
        kind, _, label = tag.partition("-")
        if kind == "I" and open_span is not None and open_span["label"] == label:
            open_span["end"] = end
            continue
        if open_span is not None:
            spans.append(open_span)
            open_span = None
        if kind in ("B", "I"):
            open_span = {"start": start, "end": end, "label": label}
    if open_span is not None:
        spans.append(open_span)
    return {"text": " ".join(text_parts), "spans": spans}


def wnut17_rows(count: int, *, with_entities_only: bool = False) -> list[dict[str, Any]]:
    """The first ``count`` wnut17 train sentences (optionally only those with an entity)."""
    rows = []
    for number, sentence in enumerate(read_conll(WNUT17)):
        row = bio_to_spans(sentence)
        if with_entities_only and not row["spans"]:
            continue
        rows.append({"id": f"w{number:04d}", **row})
        if len(rows) == count:
            break
    return rows


WNUT17_TYPES = ("person", "location", "corporation", "product", "creative-work", "group")
