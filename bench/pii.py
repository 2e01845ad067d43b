"""PII detection quality per entity type: Presidio as shipped vs stillhouse's tuned analyzer.

Data: presidio-research's synthetic set (``../shared/datasets/presidio_pii/synth_dataset_v2.json``,
1,500 sentences, MIT licence), the set of Presidio's own evaluation notebooks. Scores are
token-level as presidio-evaluator computes them (a token is a word or a punctuation mark; a
token counts for the type of the gold span that contains it, and for the type of the predicted
span that contains it), per type and micro-averaged over the types both sides know. The
dataset's STREET_ADDRESS, GPE and ZIP_CODE are Presidio's LOCATION and DOMAIN_NAME its URL, as
in the notebooks; TITLE has no Presidio recognizer and is left out.

The recognizers were tuned looking at the misses and false positives of the first 400
sentences (``dev``); the table is on the other 1,100 (``held out``), with micro averages of
both and of all.

``leak-free`` is what privacy needs: the share of gold entities whose every token is inside
some predicted entity of any type (a name tagged LOCATION is still replaced).

Run: ``.venv/bin/python bench/pii.py [--limit N]`` (prints a Markdown table).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "presidio_pii" / "synth_dataset_v2.json"
sys.path.insert(0, str(ROOT / "src"))

TYPE_MAP = {"STREET_ADDRESS": "LOCATION", "GPE": "LOCATION", "ZIP_CODE": "LOCATION"}
TYPE_MAP["DOMAIN_NAME"] = "URL"
LEFT_OUT = {"TITLE"}
PATTERN_TYPES = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
)
TOKEN = re.compile(r"\w+|[^\w\s]")
# The recognizers were tuned looking at the misses of the first DEV sentences only.
DEV = 400


def score(records: list[dict[str, Any]], predicted: list[list[tuple[str, int, int]]]) -> dict:
    """Token-level true/false positives and false negatives per type, and leak-free entities."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    entities: Counter[str] = Counter()
    covered: Counter[str] = Counter()
    for record, spans in zip(records, predicted, strict=True):
        tokens = [m.span() for m in TOKEN.finditer(record["full_text"])]
        gold = ["O"] * len(tokens)
        guess = ["O"] * len(tokens)
        for span in record["spans"]:
            kind = TYPE_MAP.get(span["entity_type"], span["entity_type"])
            if kind in LEFT_OUT:
                continue
            inside = [
                i
                for i, (a, b) in enumerate(tokens)
                if a >= span["start_position"] and b <= span["end_position"]
            ]
            for i in inside:
                gold[i] = kind
            entities[kind] += 1
            covered[kind] += all(any(s <= tokens[i][0] and tokens[i][1] <= e for _, s, e in spans) for i in inside)  # fmt: skip
        for kind, start, end in spans:
            for i, (a, b) in enumerate(tokens):
                if a >= start and b <= end:
                    guess[i] = kind
        for g, p in zip(gold, guess, strict=True):
            if g == p and g != "O":
                tp[g] += 1
                continue
            if g != "O":
                fn[g] += 1
            if p != "O":
                fp[p] += 1
    return {"tp": tp, "fp": fp, "fn": fn, "entities": entities, "covered": covered}


def ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def analyze(engine: Any, texts: list[str], threshold: float) -> tuple[list, float]:
    """Each text's entities as ``(type, start, end)``, overlaps resolved as the privacy guard
    resolves them (the higher score wins, then the longer span), and the seconds it took."""
    from presidio_analyzer import BatchAnalyzerEngine

    started = time.perf_counter()
    found = BatchAnalyzerEngine(analyzer_engine=engine).analyze_iterator(
        texts, language="en", score_threshold=threshold
    )
    spans = []
    for hits in found:
        kept: list[Any] = []
        for hit in sorted(hits, key=lambda h: (-h.score, -(h.end - h.start), h.start)):
            if all(hit.end <= k.start or k.end <= hit.start for k in kept):
                kept.append(hit)
        spans.append([(h.entity_type, h.start, h.end) for h in kept])
    return spans, time.perf_counter() - started


def cells(result: dict, kinds: tuple[str, ...]) -> str:
    """``P / R / leak-free`` micro-averaged over ``kinds``."""
    tp = sum(result["tp"][k] for k in kinds)
    fp = sum(result["fp"][k] for k in kinds)
    fn = sum(result["fn"][k] for k in kinds)
    covered = sum(result["covered"][k] for k in kinds)
    values = (ratio(tp, tp + fp), ratio(tp, tp + fn), ratio(covered, sum(result["entities"][k] for k in kinds)))  # fmt: skip
    return " / ".join("–" if v is None else f"{v:.3f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    from stillhouse.guard.pii_recognizers import shipped_analyzer as analyzer
    from stillhouse.guard.pii_recognizers import tuned_analyzer
    from stillhouse.guard.privacy import DEFAULT_SCORE_THRESHOLD

    records = json.loads(DATA.read_text(encoding="utf-8"))[: args.limit]
    texts = [r["full_text"] for r in records]
    systems = {
        "Presidio default (threshold 0)": (analyzer(), 0.0),
        f"stillhouse tuned (threshold {DEFAULT_SCORE_THRESHOLD:g})": (
            tuned_analyzer(),
            DEFAULT_SCORE_THRESHOLD,
        ),
    }
    splits = {
        f"dev (sentences 1–{DEV})": slice(0, DEV),
        f"held out (sentences {DEV + 1}–{len(records)})": slice(DEV, None),
        f"all {len(records)}": slice(None),
    }
    results: dict[str, dict[str, dict]] = {split: {} for split in splits}
    seconds = {}
    for name, (engine, threshold) in systems.items():
        engine.analyze("warm up: John Smith, 212-555-0187", language="en")
        spans, seconds[name] = analyze(engine, texts, threshold)
        for split, part in splits.items():
            results[split][name] = score(records[part], spans[part])

    names = list(systems)
    held_out = results[list(splits)[1]]
    first = held_out[names[0]]
    kinds = tuple(sorted(first["entities"], key=lambda k: -first["entities"][k]))
    print(f"Held out: {list(splits)[1]}. Cells: token precision / token recall / leak-free.")
    print()
    print("| type (entities) | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for kind in kinds:
        row = " | ".join(cells(held_out[name], (kind,)) for name in names)
        print(f"| {kind} ({first['entities'][kind]}) | {row} |")
    for split in splits:
        for label, subset in (("pattern types", PATTERN_TYPES), ("all types", kinds)):
            row = " | ".join(cells(results[split][name], subset) for name in names)
            print(f"| **{label}**, {split} | {row} |")
    print()
    for name in names:
        print(f"- {name}: {seconds[name]:.1f} s for {len(texts)} texts")


if __name__ == "__main__":
    main()
