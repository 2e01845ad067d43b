"""Privacy for remote LLM backends: personal data is found before a text leaves the process, and
pseudonymized, redacted, or the text is blocked.

Modes (task.toml ``[privacy] remote``):

- ``pseudonymize``: every entity becomes a placeholder numbered per type and per text, the same
  for every mention of the same value (``<PERSON_1>`` each time "Maria Lopez" appears, also
  where the analyzer found only one of the mentions; "Lopez" alone gets a placeholder of its
  own, as each capitalised part of a name found); placeholders in the reply are put back
  (:meth:`ProtectedText.restore`), and offsets over the sent text map back to the original
  (:meth:`ProtectedText.to_original`), so span answers land on the original text.
- ``redact``: every entity becomes its type (``<PERSON>``); nothing can be put back.
- ``block``: a text with any entity is not sent at all (:class:`PrivacyBlocked`); annotate puts
  it in the review queue ``privacy`` and evaluate counts it as an abstention.
- ``allow``: sent as written.

Unset, the mode is ``pseudonymize`` for a server that is not on this machine and ``allow`` for a
loopback one (127.0.0.0/8, ::1, ``localhost``): the data does not leave the machine. The
in-process llama.cpp backend sends nothing anywhere, so no mode applies to it.

What is looked at: the part of the prompt that comes from the data (the text and the similar
examples of ``--shots``), not the instructions, labels and fixed examples of task.toml (the task
author's own words). What is recorded: counts per entity type, never the values.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from stillhouse.errors import Errors, fail
from stillhouse.guard.pii_recognizers import IDENTIFYING_ENTITIES, tuned_analyzer
from stillhouse.llm.spotlight import MARKER, unmark

Mode = Literal["pseudonymize", "redact", "block", "allow"]
MODES: tuple[str, ...] = ("pseudonymize", "redact", "block", "allow")
DEFAULT_SCORE_THRESHOLD = 0.5
# The reason each blocked text carries in the review queue (data.store.PRIVACY_QUEUE).
BLOCKED_REASON = "privacy_blocked"


@dataclass(frozen=True)
class PrivacySettings:
    """What ``[privacy]`` asks for: ``remote`` (None: decided by the server's address),
    the entity types looked for (None: :data:`IDENTIFYING_ENTITIES`) and the lowest score kept."""

    remote: Mode | None = None
    entities: tuple[str, ...] | None = None
    score_threshold: float = DEFAULT_SCORE_THRESHOLD


@dataclass(frozen=True)
class PiiEntity:
    """One entity the analyzer found: type, character offsets in the text, score."""

    entity: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class Replacement:
    """One mention replaced: where it was (``start``/``end`` in the original), where its
    placeholder is in the sent text (``sent_start``/``sent_end``), the placeholder and type."""

    start: int
    end: int
    sent_start: int
    sent_end: int
    entity: str
    placeholder: str


@dataclass(frozen=True)
class ProtectedText:
    """A text as it is sent: ``text`` with the replacements, or the original when nothing was
    found or the mode is ``allow``; ``blocked`` when the mode is ``block`` and something was
    found. ``counts`` are the mentions per entity type (never the values)."""

    original: str
    text: str
    mode: str
    replacements: tuple[Replacement, ...] = ()
    blocked: bool = False
    _values: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(r.entity for r in self.replacements))

    def restore(self, reply: str) -> str:
        """``reply`` with every placeholder of this text (``<PERSON_1>``, or ``PERSON_1``
        without brackets) replaced by the original value; unchanged unless pseudonymized."""
        if not self._values:
            return reply

        def original(match: re.Match[str]) -> str:
            return self._values.get(match.group(1), match.group(0))

        return re.sub(r"<?\b([A-Z][A-Z_]*_\d+)\b>?", original, reply)

    def restore_json(self, reply: str) -> str:
        """:meth:`restore` inside every string of a JSON reply (re-encoded, so a value with
        quotes keeps the JSON valid); a reply that is not JSON is restored as text."""
        if not self._values:
            return reply
        try:
            parsed = json.loads(reply)
        except ValueError:
            return self.restore(reply)
        return json.dumps(self._restore_in(parsed), ensure_ascii=False)

    def _restore_in(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.restore(value)
        if isinstance(value, list):
            return [self._restore_in(item) for item in value]
        if isinstance(value, dict):
            return {key: self._restore_in(item) for key, item in value.items()}
        return value

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Character offsets over the sent text mapped to the original text. An offset inside a
        placeholder moves to the edge of the entity it stands for (a span that covers part of a
        placeholder covers the whole entity)."""
        return self._map(start, left=True), self._map(end, left=False)

    def _map(self, offset: int, *, left: bool) -> int:
        shift = 0
        for r in self.replacements:
            if offset <= r.sent_start:
                break
            if offset < r.sent_end:
                return r.start if left else r.end
            shift = r.end - r.sent_end
        return offset + shift


class PrivacyBlocked(Exception):
    """A text was not sent: the mode is ``block`` and it holds personal data (``counts``)."""

    def __init__(self, counts: dict[str, int]) -> None:
        super().__init__(f"not sent: it holds {', '.join(sorted(counts))}")
        self.counts = counts


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine: ``localhost`` or a loopback address."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_mode(setting: str | None, url: str) -> str:
    """The mode for a server at ``url``: the setting, or by default ``allow`` on loopback and
    ``pseudonymize`` elsewhere."""
    if setting is not None:
        return setting
    return "allow" if is_loopback(url) else "pseudonymize"


def find_entities(
    texts: Sequence[str],
    *,
    entities: Sequence[str] = IDENTIFYING_ENTITIES,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    analyzer: Any = None,
) -> list[list[PiiEntity]]:
    """The entities in each text (tuned Presidio analyzer), without overlaps: where two
    overlap, the higher score wins, then the longer one. E606 when Presidio is not installed."""
    try:
        from presidio_analyzer import BatchAnalyzerEngine
    except ImportError as error:
        what = "presidio-analyzer (the `audit` extra)"
        raise fail(Errors.E606, check="[privacy]", what=what, detail=error) from None

    engine = BatchAnalyzerEngine(analyzer_engine=analyzer or tuned_analyzer())
    found = engine.analyze_iterator(
        list(texts), language="en", entities=list(entities), score_threshold=score_threshold
    )
    results = []
    for hits in found:
        ranked = sorted(hits, key=lambda h: (-h.score, -(h.end - h.start), h.start))
        kept: list[PiiEntity] = []
        for hit in ranked:
            if all(hit.end <= k.start or k.end <= hit.start for k in kept):
                kept.append(PiiEntity(hit.entity_type, hit.start, hit.end, float(hit.score)))
        results.append(sorted(kept, key=lambda e: e.start))
    return results


def protect(text: str, found: Sequence[PiiEntity], mode: str) -> ProtectedText:
    """``text`` as ``mode`` sends it, given the entities found in it.

    Every other occurrence of a found value (as a whole word) is replaced as well, so a name the
    analyzer saw once does not leak where it missed it."""
    if mode not in MODES:
        raise ValueError(f"privacy mode {mode!r} is not one of {', '.join(MODES)}")
    if mode == "allow" or not found:
        return ProtectedText(text, text, mode)
    mentions = _all_mentions(text, found)
    if mode == "block":
        replaced = tuple(Replacement(s, e, s, e, kind, "") for s, e, kind in mentions)
        return ProtectedText(text, text, mode, replaced, blocked=True)
    numbers: dict[tuple[str, str], str] = {}  # (type, value) -> "PERSON_1"
    per_type: Counter[str] = Counter()
    pieces, replacements, values = [], [], {}
    cursor = sent = 0
    for start, end, kind in mentions:
        value = text[start:end]
        if mode == "pseudonymize":
            if (kind, value) not in numbers:
                per_type[kind] += 1
                numbers[(kind, value)] = f"{kind}_{per_type[kind]}"
                values[numbers[(kind, value)]] = value
            placeholder = f"<{numbers[(kind, value)]}>"
        else:
            placeholder = f"<{kind}>"
        pieces.append(text[cursor:start])
        sent += start - cursor
        replacements.append(
            Replacement(start, end, sent, sent + len(placeholder), kind, placeholder)
        )
        pieces.append(placeholder)
        sent += len(placeholder)
        cursor = end
    pieces.append(text[cursor:])
    return ProtectedText(text, "".join(pieces), mode, tuple(replacements), False, values)


def _all_mentions(text: str, found: Sequence[PiiEntity]) -> list[tuple[int, int, str]]:
    """The found entities plus every other whole-word occurrence of their values, and of each
    capitalised word of 3 letters or more of a person's name ("Mourik" alone after "Aantje
    Mourik"), without overlaps (found ones first, then longer values), in text order."""
    taken = [(e.start, e.end, e.entity) for e in found]
    values = {(text[e.start : e.end], e.entity) for e in found}
    values |= {
        (word, "PERSON")
        for e in found
        if e.entity == "PERSON"
        for word in re.findall(r"\w[\w'’-]*", text[e.start : e.end])
        if len(word) >= 3 and word[0].isupper()
    }
    values = sorted(values, key=lambda v: (-len(v[0]), v))
    for value, kind in values:
        if not value.strip():
            continue
        pattern = re.escape(value)
        pattern = (r"(?<!\w)" if value[0].isalnum() else "") + pattern
        pattern += r"(?!\w)" if value[-1].isalnum() else ""
        for match in re.finditer(pattern, text):
            if all(match.end() <= s or e <= match.start() for s, e, _ in taken):
                taken.append((match.start(), match.end(), kind))
    return sorted(taken)


def _marked_again(protected: ProtectedText, marked: str) -> ProtectedText:
    """``protected`` (made from the unmarked ``marked``) with the datamark's markers back where
    they were, outside the replaced mentions (unmarking swaps one character for one, so the
    offsets of ``marked`` are those of the text that was protected)."""
    sent = list(protected.text)
    replacements = sorted(protected.replacements, key=lambda r: r.start)
    shift = 0
    index = 0
    for position, char in enumerate(marked):
        while index < len(replacements) and replacements[index].end <= position:
            r = replacements[index]
            shift += (r.sent_end - r.sent_start) - (r.end - r.start)
            index += 1
        if char != MARKER:
            continue
        if index < len(replacements) and replacements[index].start <= position:
            continue  # inside a mention: its placeholder stands for it
        sent[position + shift] = MARKER
    return dataclasses.replace(protected, original=marked, text="".join(sent))


class PrivacyFilter:
    """What a remote backend applies to each prompt before it is sent, and the counts it keeps
    for the run record: texts checked, texts with personal data, mentions per entity type,
    texts blocked."""

    def __init__(self, mode: str, settings: PrivacySettings) -> None:
        self.mode = mode
        self.entities = settings.entities or IDENTIFYING_ENTITIES
        self.score_threshold = settings.score_threshold
        self.texts_checked = 0
        self.texts_with_pii = 0
        self.blocked = 0
        self.mentions: Counter[str] = Counter()
        # generate_many sends from threads; spaCy and the counters are used one at a time
        self._lock = threading.Lock()

    def protect(self, text: str) -> ProtectedText:
        """``text`` as this filter sends it (see :func:`protect`); counts it."""
        if self.mode == "allow":
            return ProtectedText(text, text, self.mode)
        with self._lock:
            # a datamarked text ([llm] spotlight) is protected with its spaces back (the marker
            # hides names from the NER model and glues words together), then marked again
            plain = unmark(text)
            found = find_entities(
                [plain], entities=self.entities, score_threshold=self.score_threshold
            )[0]
            protected = protect(plain, found, self.mode)
            if plain != text:
                protected = _marked_again(protected, text)
            self.texts_checked += 1
            self.texts_with_pii += bool(protected.replacements)
            self.blocked += protected.blocked
            self.mentions.update(protected.counts)
        return protected

    def record(self) -> dict[str, Any]:
        """The counts for a run's record: no value ever appears here."""
        return {
            "mode": self.mode,
            "texts_checked": self.texts_checked,
            "texts_with_pii": self.texts_with_pii,
            "texts_blocked": self.blocked,
            "mentions": dict(self.mentions.most_common()),
        }
