"""The HTTP API's data: how a ``POST /v1/predict`` body is read and checked, how a prediction is
written as JSON, how an error looks, and the OpenAPI schemas that say the same.

Bodies are parsed with orjson and checked by hand rather than by pydantic, for speed and for
messages that name the field (``texts[3]``); the OpenAPI request schema
(:func:`predict_request_schema`) states exactly the same rules, so a client generated from
``/openapi.json`` sends what the server accepts. Every error is
``{"error": {"code": "E815", "message": "...", "field": "texts[3]"}}`` (``field`` where one is
at fault), with a code of :class:`stillhouse.errors.Errors`.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, Field

from stillhouse.data.records import Prediction, Span
from stillhouse.errors import Errors, StillhouseError, fail

# A text needs one character that is not a space in Python's sense nor in JSON Schema's
# (ECMAScript's \s): the class is spelled out, so the server and /openapi.json's pattern agree
# in both regex dialects (they differ on U+001C–U+001F, U+0085 and U+FEFF).
SPACES = (
    "\\t-\\r \\u001c-\\u001f\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f"
    "\\u3000\\ufeff"
)
NOT_ONLY_SPACE = f"[^{SPACES}]"
_NOT_ONLY_SPACE = re.compile(NOT_ONLY_SPACE)
_FIELDS = ("text", "texts", "system", "k", "lang")
LANG_PATTERN = "^[a-z]{2,3}$"  # ISO 639-1 or -3, as by-lang routes are named
_LANG = re.compile(LANG_PATTERN)


class ApiError(Exception):
    """An answer other than 200: HTTP ``status`` and the error (code and message)."""

    def __init__(
        self,
        status: int,
        error: StillhouseError,
        *,
        field: str | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(error.message)
        self.status = status
        self.error = error
        self.field = field
        self.headers = list(headers)

    def body(self) -> bytes:
        return error_body(self.error, self.field)


def error_body(error: StillhouseError, field: str | None = None) -> bytes:
    content: dict[str, Any] = {"code": error.code, "message": error.message}
    if field is not None:
        content["field"] = field
    return orjson.dumps({"error": content})


@dataclass(frozen=True)
class PredictRequest:
    """A checked request: its ``texts`` (one for ``{"text": ...}``), the system's name (None:
    the default), ``k`` (None: the server's default top-k) and ``lang``, the language of every
    text for a by-lang system (None: it detects each text's)."""

    texts: list[str]
    system: str | None
    k: int | None
    lang: str | None = None


@dataclass(frozen=True)
class Limits:
    max_texts: int
    max_text_chars: int
    labels: int  # the largest k


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _invalid(template: str, field: str, **values: Any) -> ApiError:
    return ApiError(422, fail(template, field=field, **values), field=field)


def parse_json(body: bytes) -> Any:
    """The JSON value of ``body``: E813 (400) for invalid UTF-8 with the byte's offset, E812
    (400) for anything else that is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise ApiError(400, fail(Errors.E813, offset=bad.start)) from None
        raise ApiError(400, fail(Errors.E812, detail=str(error))) from None


def _check_text(value: Any, field: str, limits: Limits) -> str:
    if not isinstance(value, str):
        raise _invalid(Errors.E814, field, expected="a string", got=_json_type(value))
    if not _NOT_ONLY_SPACE.search(value):
        raise _invalid(Errors.E815, field)
    if len(value) > limits.max_text_chars:
        raise _invalid(Errors.E816, field, length=len(value), limit=limits.max_text_chars)
    return value


def parse_predict(body: bytes, systems: Sequence[str], limits: Limits) -> PredictRequest:
    """Read a /v1/predict body (see :func:`predict_request_schema`); :class:`ApiError` 400 for
    a body that is not JSON, 422 naming the field for one that breaks a rule."""
    data = parse_json(body)
    if not isinstance(data, dict):
        raise _invalid(Errors.E814, "body", expected="a JSON object", got=_json_type(data))
    for key in data:
        if key not in _FIELDS:
            raise _invalid(Errors.E821, key)
    has = [key for key in ("text", "texts") if key in data]
    if len(has) != 1:
        shown = " and ".join(f'"{key}"' for key in has) if has else "neither"
        raise ApiError(422, fail(Errors.E820, has=shown), field="text")
    if has == ["text"]:
        texts = [_check_text(data["text"], "text", limits)]
    else:
        given = data["texts"]
        if not isinstance(given, list):
            raise _invalid(
                Errors.E814, "texts", expected="a list of strings", got=_json_type(given)
            )
        if not given:
            raise ApiError(422, fail(Errors.E822), field="texts")
        if len(given) > limits.max_texts:
            raise ApiError(
                422, fail(Errors.E817, count=len(given), limit=limits.max_texts), field="texts"
            )
        texts = [_check_text(value, f"texts[{i}]", limits) for i, value in enumerate(given)]
    system = data.get("system")
    if system is not None or "system" in data:
        if not isinstance(system, str):
            raise _invalid(Errors.E814, "system", expected="a string", got=_json_type(system))
        if system not in systems:
            names = ", ".join(systems)
            raise ApiError(422, fail(Errors.E818, name=system, names=names), field="system")
    k = data.get("k")
    if k is not None or "k" in data:
        if isinstance(k, float) and k.is_integer():  # JSON Schema's integer: 3.0 is one
            k = int(k)
        if not isinstance(k, int) or isinstance(k, bool):
            raise _invalid(Errors.E814, "k", expected="an integer", got=_json_type(k))
        if not 1 <= k <= limits.labels:
            raise ApiError(422, fail(Errors.E819, value=k, limit=limits.labels), field="k")
    lang = data.get("lang")
    if lang is not None or "lang" in data:
        if not isinstance(lang, str):
            raise _invalid(Errors.E814, "lang", expected="a string", got=_json_type(lang))
        if not _LANG.match(lang):
            raise ApiError(422, fail(Errors.E849, value=lang), field="lang")
    return PredictRequest(texts, system, k, lang)


# ----------------------------------------------------------------------------------------------
# answers


def top_probabilities(probs: dict[str, float], k: int) -> dict[str, float]:
    """The ``k`` most probable labels, most probable first."""
    if k >= len(probs):
        return dict(sorted(probs.items(), key=lambda item: -item[1]))
    return dict(heapq.nlargest(k, probs.items(), key=lambda item: item[1]))


def confidence_of(prediction: Prediction, kind: str) -> float | None:
    """How sure the answer is: a cascade's answering stage's top probability (its own
    ``confidence``), else the top probability (classify), the least sure label decision
    (multilabel: max(p, 1 − p) over labels) or the least sure span's score (spans)."""
    given = prediction.info.get("confidence")
    if isinstance(given, int | float) and not isinstance(given, bool):
        return None if math.isnan(given) else float(given)
    if kind == "spans":
        scores = [span.score for span in prediction.answer if isinstance(span, Span)]
        known = [score for score in scores if score is not None]
        return min(known) if known and len(known) == len(scores) else None
    if not prediction.probs:
        return None
    if kind == "multilabel":
        return min(max(p, 1.0 - p) for p in prediction.probs.values())
    return max(prediction.probs.values())


def answer_json(
    prediction: Prediction,
    kind: str,
    *,
    k: int,
    version: str,
    latency_ms: float,
    confidence: float | None,
) -> dict[str, Any]:
    """One text's answer: ``label`` (``labels`` / ``spans``), ``probs`` (the top ``k``, most
    probable first; null for spans), ``confidence``, ``abstained``, ``stage``, ``version``,
    ``latency_ms``, ``guard`` (``injection``, ``score``, ``action``; ``removed_chars`` from a
    cascade under ``route``) when the text was flagged as a possible prompt injection, and
    ``route`` (``route``, ``lang``) from a by-lang system. An abstained text's label is null; its
    probabilities are the last stage's."""
    abstained = bool(prediction.info.get("abstained", False))
    answer: dict[str, Any]
    if kind == "classify":
        answer = {"label": None if abstained else prediction.answer}
    elif kind == "multilabel":
        answer = {"labels": list(prediction.answer)}
    else:
        answer = {"spans": [_span(span) for span in prediction.answer]}  # type: ignore[arg-type]
    answer["probs"] = None if prediction.probs is None else top_probabilities(prediction.probs, k)
    answer["confidence"] = confidence
    answer["abstained"] = abstained
    answer["stage"] = prediction.info.get("stage")
    answer["version"] = version
    answer["latency_ms"] = latency_ms
    guard = flagged_guard(prediction)
    if guard is not None:
        answer["guard"] = guard
    route = prediction.info.get("route")
    if isinstance(route, str):  # a by-lang system: the route that answered, and on what
        answer["route"] = {"route": route, "lang": prediction.info.get("lang")}
    return answer


def flagged_guard(prediction: Prediction) -> dict[str, Any] | None:
    """``info["guard"]`` when the prompt-injection detector flagged the text ([guard]), else
    None (an unflagged text's answer does not carry it)."""
    guard = prediction.info.get("guard")
    return guard if isinstance(guard, dict) and guard.get("injection") else None


def _span(span: Span) -> dict[str, Any]:
    row: dict[str, Any] = {"start": span.start, "end": span.end, "label": span.label}
    row["text"] = span.text
    if span.score is not None:
        row["score"] = span.score
    return row


# ----------------------------------------------------------------------------------------------
# OpenAPI: what the responses look like (documentation only; answers are written by orjson)


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable stillhouse error code, E8xx for the server.")
    message: str = Field(description="What is wrong and what to do.")
    field: str | None = Field(None, description="The request field at fault, e.g. texts[3].")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class SpanOut(BaseModel):
    start: int
    end: int
    label: str
    text: str
    score: float | None = None


class PredictionOut(BaseModel):
    label: str | None = Field(
        None, description="classify: the label; null when the system abstained."
    )
    labels: list[str] | None = Field(None, description="multilabel: the labels.")
    spans: list[SpanOut] | None = Field(None, description="spans: the spans found.")
    probs: dict[str, float] | None = Field(
        description="Calibrated probabilities of the top-k labels, most probable first "
        "(null for spans)."
    )
    confidence: float | None = Field(
        description="The answering stage's top probability (multilabel: the least sure "
        "decision; spans: the least sure span's score)."
    )
    abstained: bool = Field(description="True when the cascade sent the text to review.")
    stage: str | None = Field(
        description="The cascade stage that answered (or abstained); null for a single model."
    )
    version: str = Field(description="The system's content hash (as GET /v1/systems).")
    latency_ms: float = Field(description="Time from the request's arrival to this answer.")
    guard: dict[str, Any] | None = Field(
        None,
        description="Only when the prompt-injection detector flagged the text ([guard]): "
        "injection (true), score (the detector's probability) and action (route, block or "
        "flag: what was done instead of, or besides, asking the LLM); for a cascade under "
        "route also removed_chars (how much of the text its model stages did not read).",
    )
    route: dict[str, str | None] | None = Field(
        None,
        description="Only from a by-lang system: route (the language route that answered, * "
        "for the fallback) and lang (the language detected by lingua, or unknown).",
    )


class PredictResponse(BaseModel):
    system: str
    predictions: list[PredictionOut]


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    systems: dict[str, str] = Field(description="Each system's version.")


class SystemsResponse(BaseModel):
    default: str
    systems: list[dict[str, Any]]


class ReloadResponse(BaseModel):
    reloaded: list[dict[str, Any]] | None = None
    requested: bool | None = None
    workers: int | None = None
    seconds: float | None = None


def predict_request_schema(systems: Sequence[str], limits: Limits) -> dict[str, Any]:
    """The JSON schema of a /v1/predict body: exactly one of ``text`` / ``texts``, each text 1
    to ``max_text_chars`` characters with one that is not a space, at most ``max_texts`` texts,
    an optional ``system`` of this server's, an optional ``k`` from 1 to the label count and an
    optional ``lang`` (a language code, for a by-lang system)."""
    text = {
        "type": "string",
        "minLength": 1,
        "maxLength": limits.max_text_chars,
        "pattern": NOT_ONLY_SPACE,
        "description": "A text to answer (not only spaces).",
    }
    return {
        "title": "PredictRequest",
        "type": "object",
        "properties": {
            "text": text,
            "texts": {
                "type": "array",
                "items": text,
                "minItems": 1,
                "maxItems": limits.max_texts,
                "description": "Several texts, answered in order.",
            },
            "system": {
                "type": "string",
                "enum": list(systems),
                "description": f"The system to answer with (default: {systems[0]}).",
            },
            "k": {
                "type": "integer",
                "minimum": 1,
                "maximum": limits.labels,
                "description": "How many of the most probable labels to return probabilities for.",
            },
            "lang": {
                "type": "string",
                "pattern": LANG_PATTERN,
                "description": "The language of every text (ISO 639 code), for a by-lang "
                "system: it routes by this instead of detecting each text's language. Other "
                "systems ignore it.",
            },
        },
        "additionalProperties": False,
        "oneOf": [{"required": ["text"]}, {"required": ["texts"]}],
        "example": {"text": "The food was lovely and the staff friendly."},
    }
