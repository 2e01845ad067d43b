"""Text health: empty, very short or very long texts, encoding damage (mojibake), markup remnants,
control characters and boilerplate repeated across many texts."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from stillhouse.audit.normalize import normalize_text
from stillhouse.audit.result import CheckResult
from stillhouse.data.records import Example

NAME, TITLE = "text", "Text health"
MIN_CHARS = 3
# About 500 tokens: past this, the LLM prompt ([llm].max_text_tokens) and small models truncate.
MAX_CHARS = 2000
BOILERPLATE_MIN_CHARS = 20
BOILERPLATE_MIN_SHARE = 0.01
BOILERPLATE_MIN_TEXTS = 3

_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>")
_ENTITY = re.compile(r"&(?:amp|lt|gt|quot|apos|nbsp|#\d{2,5}|#x[0-9a-fA-F]{2,4});")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SEGMENT = re.compile(r"\n+|(?<=[.!?])\s+")


@dataclass(frozen=True)
class TextProblem:
    id: str
    problem: str
    detail: str
    text: str


def mojibake_detail(text: str) -> str | None:
    """Why ``text`` looks like UTF-8 decoded with the wrong codec, or ``None``.

    Text whose characters, encoded as cp1252 or latin-1, form valid UTF-8 that reads differently
    was almost surely decoded wrongly once ("cafÃ©" → "café"); U+FFFD marks bytes lost outright.
    """
    if "\ufffd" in text:
        return "contains U+FFFD (bytes lost in decoding)"
    if text.isascii():
        return None
    for codec in ("cp1252", "latin-1"):
        try:
            repaired = text.encode(codec).decode("utf-8")
        except UnicodeError:
            continue
        if repaired != text:
            return f"UTF-8 read as {codec}: {_first_difference(text, repaired)}"
    return None


def _first_difference(text: str, repaired: str) -> str:
    for start, (a, b) in enumerate(zip(text, repaired, strict=False)):
        if a != b:
            return f"{text[start : start + 6]!r} should read {repaired[start : start + 3]!r}"
    return "differs"


def markup_detail(text: str) -> str | None:
    found = _TAG.search(text) or _ENTITY.search(text)
    return f"{found.group(0)!r}" if found else None


def boilerplate_segments(texts: Sequence[str]) -> dict[str, int]:
    """Sentences/lines (≥ 20 characters) that recur in many distinct texts: segment → count."""
    unique = {normalize_text(text): text for text in texts}
    counts: Counter[str] = Counter()
    for key, text in unique.items():
        # Split the raw text (normalising first would erase its line breaks).
        segments = {normalize_text(s) for s in _SEGMENT.split(text)}
        counts.update(s for s in segments if len(s) >= BOILERPLATE_MIN_CHARS and s != key)
    needed = max(BOILERPLATE_MIN_TEXTS, int(BOILERPLATE_MIN_SHARE * len(unique)))
    return {segment: count for segment, count in counts.most_common() if count >= needed}


def text_problems(
    examples: Sequence[Example], *, min_chars: int = MIN_CHARS, max_chars: int = MAX_CHARS
) -> list[TextProblem]:
    problems = []
    for example in examples:
        text = example.text
        stripped = text.strip()
        if len(stripped) < min_chars:
            problems.append(TextProblem(example.id, "very short", f"{len(stripped)} chars", text))
        if len(text) > max_chars:
            detail = f"{len(text)} chars (> {max_chars}; models truncate it)"
            problems.append(TextProblem(example.id, "very long", detail, text[:300]))
        if (detail := mojibake_detail(text)) is not None:
            problems.append(TextProblem(example.id, "encoding damage", detail, text))
        if (detail := markup_detail(text)) is not None:
            problems.append(TextProblem(example.id, "markup", detail, text))
        if _CONTROL.search(text):
            problems.append(TextProblem(example.id, "control characters", "", text))
    return problems


def check_text_health(examples: Sequence[Example], empty_rows: Sequence[str] = ()) -> CheckResult:
    """``empty_rows``: read_examples' messages (``file:line: …``) for rows with an empty text."""
    problems = [
        TextProblem(message.split(": ", 1)[0], "empty", message.split(": ", 1)[-1], "")
        for message in empty_rows
    ]
    problems += text_problems(examples)
    boilerplate = boilerplate_segments([example.text for example in examples])
    for segment, count in boilerplate.items():
        problems.append(TextProblem("", "boilerplate", f"in {count} texts", segment))
    by_problem = Counter(problem.problem for problem in problems)
    metrics = {"rows": len(examples) + len(empty_rows), "by_problem": dict(by_problem)}
    if not problems:
        return CheckResult(NAME, TITLE, "ok", 0, "No empty, damaged or odd texts.", "", metrics)
    summary = "; ".join(f"{name}: {count}" for name, count in by_problem.most_common()) + "."
    advice = (
        "Drop empty texts; repair encoding damage at the source (decode as UTF-8); strip markup "
        "and boilerplate before labelling and training; check very short/long texts."
    )
    severe = by_problem["empty"] or by_problem["encoding damage"]
    status = "problem" if severe else "warning"
    return CheckResult(NAME, TITLE, status, len(problems), summary, advice, metrics, problems)
