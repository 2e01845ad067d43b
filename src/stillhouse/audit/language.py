"""Language mix: the detected language of every text (lingua), its distribution overall and per
label, and the texts whose language is not among the task's languages."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from stillhouse.audit.result import CheckResult, share
from stillhouse.data.records import Example
from stillhouse.errors import Errors, fail

NAME, TITLE = "language", "Language mix"
# Detected besides the task's own languages: widely used languages and the neighbours of common
# task languages (Malay next to Indonesian, …). A smaller candidate set is faster and steadier.
CANDIDATES = (
    "en", "es", "fr", "de", "it", "pt", "nl", "sv", "pl", "tr", "ru", "ar",
    "hi", "zh", "ja", "ko", "vi", "id", "ms", "tl",
)  # fmt: skip
# Above this many texts lingua's low-accuracy mode (trigrams only, ~10x faster) is used.
FAST_MODE_ABOVE = 5000
UNKNOWN = "unknown"


@dataclass(frozen=True)
class OffLanguageText:
    id: str
    language: str
    label: str | None
    text: str


def detector_languages(task_languages: Sequence[str]) -> tuple[list[object], list[str]]:
    """lingua Languages for the task's languages plus :data:`CANDIDATES`, and the task's codes
    lingua cannot detect."""
    from lingua import IsoCode639_1, Language

    languages, unsupported = [], []
    for code in dict.fromkeys([*task_languages, *CANDIDATES]):
        try:
            languages.append(Language.from_iso_code_639_1(IsoCode639_1.from_str(code)))
        except ValueError:
            if code in task_languages:
                unsupported.append(code)
    return languages, unsupported


def detect_languages(
    texts: Sequence[str], task_languages: Sequence[str], *, fast: bool | None = None
) -> tuple[list[str], list[str]]:
    """ISO 639-1 code per text (``unknown`` where lingua gives none) and the unsupported codes."""
    try:
        from lingua import LanguageDetectorBuilder
    except ImportError as error:
        raise fail(Errors.E606, check=NAME, what="lingua-language-detector", detail=error) from None
    languages, unsupported = detector_languages(task_languages)
    builder = LanguageDetectorBuilder.from_languages(*languages)
    if fast if fast is not None else len(texts) > FAST_MODE_ABOVE:
        builder = builder.with_low_accuracy_mode()
    detector = builder.build()
    found = detector.detect_languages_in_parallel_of(list(texts))
    codes = [UNKNOWN if lang is None else lang.iso_code_639_1.name.lower() for lang in found]
    return codes, unsupported


def check_language(
    examples: Sequence[Example],
    labels: Sequence[str | None],
    task_languages: Sequence[str],
    *,
    fast: bool | None = None,
) -> CheckResult:
    codes, unsupported = detect_languages([e.text for e in examples], task_languages, fast=fast)
    expected = set(task_languages)
    distribution = Counter(codes)
    per_label: dict[str, Counter[str]] = defaultdict(Counter)
    for code, label in zip(codes, labels, strict=True):
        per_label[label or "(unlabelled)"][code] += 1
    off = [
        OffLanguageText(example.id, code, label, example.text)
        for example, code, label in zip(examples, codes, labels, strict=True)
        if code not in expected
    ]
    metrics = {
        "distribution": dict(distribution.most_common()),
        "per_label": {label: dict(counts.most_common()) for label, counts in per_label.items()},
        "task_languages": list(task_languages),
        "off_language_rows": len(off),
        "off_language_share": share(len(off), len(examples)),
        "undetectable_task_languages": unsupported,
        "fast_mode": bool(fast if fast is not None else len(examples) > FAST_MODE_ABOVE),
    }
    note = ""
    if unsupported:
        note = (
            f" lingua cannot detect {', '.join(unsupported)}: texts in it are attributed to the "
            "closest language it knows, so this count is an upper bound."
        )
    if not off:
        summary = f"Every text is in the task's languages ({', '.join(task_languages)})."
        return CheckResult(NAME, TITLE, "ok", 0, summary + note, "", metrics)
    top = ", ".join(
        f"{code} {count}" for code, count in Counter(t.language for t in off).most_common(5)
    )
    summary = (
        f"{len(off)} text(s) ({metrics['off_language_share']:.1%}) are not in the task's "
        f"languages ({', '.join(task_languages)}): {top}." + note
    )
    advice = (
        "Add the language to task.toml `languages` if it belongs, else remove or translate these "
        "texts; evaluate per language (--slice lang) when several are expected."
    )
    status = "warning" if unsupported or metrics["off_language_share"] < 0.05 else "problem"
    return CheckResult(NAME, TITLE, status, len(off), summary, advice, metrics, off)
