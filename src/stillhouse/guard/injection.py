"""Prompt-injection detection: does a text carry instructions aimed at the model?

Two detectors ship in the package, ordinary stillhouse model folders trained by ``stillhouse
train`` on the corpus of :mod:`.injection_corpus` (:data:`DETECTORS`, chosen by ``[guard]
detector``):

- ``linear`` (``guard/detector/``, the default): recipe ``linear``, TF-IDF word 1–2-grams and
  character 2–5-grams, logistic head, temperature scaling — well under a millisecond a window;
- ``encoder-ngrams`` (``guard/detector-encoder/``): the same n-grams beside all-MiniLM-L6-v2
  int8 sentence embeddings (recipe ``encoder-ngrams``, a text embedded alone) — more held-out
  attacks caught at the same false-positive rule, for a few milliseconds a window
  (bench/RESULTS.md).

Each card holds, besides the usual fields, ``injection_detector``: the threshold and the
figures it was chosen and measured on. ``tools/build_injection_detector.py`` rebuilds either
bit-for-bit (:func:`build_detector`).

:func:`scan` gives each text ``injection`` (score at or above the threshold) and ``score`` (the
calibrated probability of the ``injection`` label; for a text longer than
:data:`WINDOW_CHARS`, that of its most suspicious window of sentences: :func:`windows`).

The threshold is chosen on the valid split's clean texts (banking77, NusaX English, WNUT17 posts
and Presidio sentences the detector was not trained on; BIPIA has too few e-mails to spare): the
lowest at which the false-positive rate of every one of those sources is at most 1% (a rule on
their mean let one register through at 2–5%: bench/RESULTS.md). What it gives on held-out attack
families and clean test texts is in the card and bench/RESULTS.md.
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stillhouse.errors import Errors, fail

if TYPE_CHECKING:
    from stillhouse.task import Task
    from stillhouse.train.model import TrainedModel

DETECTOR = Path(__file__).resolve().parent / "detector"
# The shipped detectors by name (the recipe each was trained with); the first is the default
DETECTORS = {
    "linear": DETECTOR,
    "encoder-ngrams": Path(__file__).resolve().parent / "detector-encoder",
}
DEFAULT_DETECTOR = "linear"
INJECTION_LABEL = "injection"
CARD_SECTION = "injection_detector"
# What the threshold allows: false-positive rate of each of the valid split's sources
TARGET_FALSE_POSITIVE_RATE = 0.01
# The detector's training settings (recorded in its card)
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (2, 5)
C = 10.0
# A long text is scored by its most suspicious run of sentences of at most this many characters:
# in the whole of a long e-mail an attack is a small share of the TF-IDF vector (bench/guard.py)
WINDOW_CHARS = 100
# created_at of a rebuilt card: fixed, so the card (and the manifest) rebuild bit-for-bit
BUILD_DATE = "2026-12-02T00:00:00+00:00"
_TASK_TOML = (
    'name = "prompt-injection"\n'
    'instructions = "Does the text carry instructions aimed at the model reading it?"\n'
    "[labels]\n"
    'benign = "An ordinary task text: no instruction aimed at the model."\n'
    'injection = "The text carries instructions aimed at the model (prompt injection)."\n'
)


@dataclass(frozen=True)
class InjectionScore:
    """One text's verdict: ``injection`` when ``score`` (calibrated probability) ≥ threshold."""

    injection: bool
    score: float


class Detector:
    """A detector model folder and its threshold; ``scan(texts)`` scores a batch."""

    def __init__(
        self, model: TrainedModel, threshold: float, window: int | None = WINDOW_CHARS
    ) -> None:
        self.model = model
        self.threshold = threshold
        self.window = window
        self._column = model.labels.index(INJECTION_LABEL)

    @classmethod
    def load(cls, path: str | Path = DETECTOR) -> Detector:
        """Open a detector folder (E721 if its card has no ``injection_detector`` threshold)."""
        from stillhouse.train.load import load_model

        model = load_model(path, threads=1)
        section = model.card.get(CARD_SECTION)
        threshold = section.get("threshold") if isinstance(section, dict) else None
        if INJECTION_LABEL not in model.labels or not isinstance(threshold, float):
            raise fail(
                Errors.E721,
                path=path,
                detail=f"it is not an injection detector (no `{CARD_SECTION}.threshold` in its "
                f"card or no `{INJECTION_LABEL}` label)",
            )
        window = section.get("window_chars")  # type: ignore[union-attr]
        return cls(model, threshold, window if isinstance(window, int) else None)

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Score per text, shape (len(texts),): the calibrated probability of injection of its
        most suspicious window (the text itself when it is short or ``window`` is None)."""
        if self.window is None:
            return self.model.probabilities(list(texts))[:, self._column]
        pieces = [windows(text, self.window) for text in texts]
        flat = [piece for text_pieces in pieces for piece in text_pieces]
        if not flat:
            return np.zeros(0)
        probabilities = self.model.probabilities(flat)[:, self._column]
        starts = np.cumsum([0] + [len(text_pieces) for text_pieces in pieces[:-1]])
        return np.maximum.reduceat(probabilities, starts)

    def scan(self, texts: Sequence[str], threshold: float | None = None) -> list[InjectionScore]:
        """Each text's verdict at ``threshold`` (default the detector's own)."""
        cut = self.threshold if threshold is None else check_threshold(threshold)
        return [InjectionScore(bool(s >= cut), float(s)) for s in self.scores(texts)]

    def remainders(self, texts: Sequence[str], threshold: float | None = None) -> list[str]:
        """Each text without its windows scoring at or above ``threshold`` (default the
        detector's own): the windows left, joined by spaces — the text itself when no window
        reaches it, ``""`` when every window does (a short text is one window)."""
        cut = self.threshold if threshold is None else check_threshold(threshold)
        pieces = [windows(t, self.window) if self.window else [t] for t in texts]
        flat = [piece for text_pieces in pieces for piece in text_pieces]
        if not flat:
            return []
        scores = iter(self.model.probabilities(flat)[:, self._column])
        kept = []
        for text, text_pieces in zip(texts, pieces, strict=True):
            left = [piece for piece in text_pieces if next(scores) < cut]
            kept.append(text if len(left) == len(text_pieces) else " ".join(left))
        return kept


_SENTENCE_END = re.compile(r"(?<=[.!?\n])\s+")


def windows(text: str, size: int) -> list[str]:
    """``text`` cut into runs of whole sentences of at most ``size`` characters (a longer
    sentence cut at spaces); the text itself when it has no more than ``size``."""
    if len(text) <= size:
        return [text]
    found: list[str] = []
    current = ""
    for sentence in _pieces(text, size):
        if current and len(current) + 1 + len(sentence) > size:
            found.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        found.append(current)
    return found or [text]


def _pieces(text: str, size: int) -> list[str]:
    """The sentences of ``text``, a sentence longer than ``size`` cut at spaces into parts of at
    most ``size`` characters (a word longer than that is a part of its own)."""
    found = []
    for sentence in _SENTENCE_END.split(text):
        if not sentence.strip():
            continue
        if len(sentence) <= size:
            found.append(sentence)
            continue
        part = ""
        for word in sentence.split():
            if part and len(part) + 1 + len(word) > size:
                found.append(part)
                part = word
            else:
                part = f"{part} {word}" if part else word
        if part:
            found.append(part)
    return found


def check_threshold(threshold: float) -> float:
    """E900 unless 0 ≤ ``threshold`` ≤ 1."""
    if not 0.0 <= threshold <= 1.0:
        raise fail(Errors.E900, option="--threshold", expected="between 0 and 1", value=threshold)
    return threshold


def check_detector(name: str, option: str = "detector") -> str:
    """E900 (naming ``option``) unless ``name`` is a shipped detector of :data:`DETECTORS`."""
    if name not in DETECTORS:
        raise fail(
            Errors.E900, option=option, expected=f"one of {', '.join(DETECTORS)}", value=name
        )
    return name


@cache
def shipped_detector(name: str = DEFAULT_DETECTOR) -> Detector:
    """A detector inside the package (:data:`DETECTORS`), loaded (and its files checked) once
    per process; E900 for an unknown name."""
    return Detector.load(DETECTORS[check_detector(name)])


def scan(
    texts: Sequence[str], threshold: float | None = None, detector: str = DEFAULT_DETECTOR
) -> list[InjectionScore]:
    """A shipped detector's verdict for every text (``threshold``: default the detector's own;
    ``detector``: a name of :data:`DETECTORS`)."""
    return shipped_detector(detector).scan(texts, threshold)


@dataclass(frozen=True)
class ScanSummary:
    """What ``guard scan`` wrote: the file, how many rows, how many flagged, at what threshold."""

    path: str
    written: int
    flagged: int
    threshold: float
    seconds: float


def scan_file(
    input_path: str | Path,
    out: str | Path,
    *,
    threshold: float | None = None,
    task: Task | None = None,
    detector: Detector | None = None,
) -> ScanSummary:
    """Scan every text of ``input_path`` (fields mapped by ``task``, else ``text``/``id``) and
    write ``out`` atomically: one ``{"id", "injection", "score"}`` row per text. The output
    guard runs first (E120–E126), then the threshold's range (E900) and the input's rows
    (E101–E109, nothing written on any error)."""
    import time

    from stillhouse.data.io import read_examples, write_jsonl
    from stillhouse.output_guard import Input, Output, check_outputs, task_inputs
    from stillhouse.task import Task as TaskSpec

    input_path = Path(input_path)
    check_outputs(
        [Output("--out", Path(out), needed_bytes=_size(input_path))],
        [Input("the input data", input_path), *task_inputs(task.path if task else None, None)],
    )
    if threshold is not None:
        check_threshold(threshold)
    fields = task or TaskSpec(name="guard-scan", labels={"benign": "", INJECTION_LABEL: ""})
    examples = read_examples(
        input_path, fields, read_gold=False, offers_skip_invalid=False
    ).examples
    chosen = detector or shipped_detector()
    started = time.perf_counter()
    verdicts: list[InjectionScore] = []
    for start in range(0, len(examples), _BATCH):
        verdicts += chosen.scan([e.text for e in examples[start : start + _BATCH]], threshold)
    seconds = time.perf_counter() - started
    written = write_jsonl(
        out,
        (
            {"id": example.id, "injection": verdict.injection, "score": round(verdict.score, 6)}
            for example, verdict in zip(examples, verdicts, strict=True)
        ),
    )
    cut = chosen.threshold if threshold is None else threshold
    flagged = sum(verdict.injection for verdict in verdicts)
    return ScanSummary(str(out), written, flagged, cut, seconds)


_BATCH = 256


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# ---------------------------------------------------------------- measuring and choosing


def choose_threshold(
    scores: np.ndarray, sources: Sequence[str], target: float = TARGET_FALSE_POSITIVE_RATE
) -> float:
    """The lowest threshold (just above a score of a benign text, or 1.0) at which the
    false-positive rate of every one of ``sources`` is at most ``target``; ``scores`` are those
    of benign texts. Every source, not their mean: a mean lets a task whose texts read like
    instructions (reviews that address the reader) be flagged several times as often."""
    groups = [scores[np.array(sources) == source] for source in sorted(set(sources))]
    for candidate in np.unique(scores):  # ascending: the first that meets the target is lowest
        cut = float(np.nextafter(candidate, np.inf))
        if max((group >= cut).mean() for group in groups) <= target:
            return cut
    return 1.0


def recall_at_false_positive_rate(
    scores: np.ndarray, attacked: np.ndarray, rate: float = 0.01
) -> tuple[float, float]:
    """(recall, threshold): the share of attacked texts flagged at the lowest threshold that
    flags at most ``rate`` of the clean ones (``attacked``: bool per text)."""
    clean = np.sort(scores[~attacked])
    allowed = int(np.floor(rate * len(clean)))  # false positives allowed
    cut = float(np.nextafter(clean[len(clean) - allowed - 1], np.inf)) if len(clean) else 0.0
    return float((scores[attacked] >= cut).mean()), cut


def held_out_report(
    detector: Detector, rows: Sequence[dict[str, Any]], threshold: float | None = None
) -> dict[str, Any]:
    """The detector on corpus rows: at ``threshold`` (default its own) recall per family and
    false-positive rate per source; per task source, ROC AUC and recall at 1% FPR."""
    from sklearn.metrics import roc_auc_score

    cut = detector.threshold if threshold is None else threshold
    scores = detector.scores([row["text"] for row in rows])
    attacked = np.array([row["label"] == INJECTION_LABEL for row in rows])
    families = np.array([_family_group(row["family"]) for row in rows], dtype=object)
    sources = np.array([row["source"] for row in rows], dtype=object)
    flagged = scores >= cut
    report: dict[str, Any] = {
        "threshold": cut,
        "attacked": int(attacked.sum()),
        "clean": int((~attacked).sum()),
        "recall": float(flagged[attacked].mean()),
        "false_positive_rate": float(flagged[~attacked].mean()),
        "roc_auc": float(roc_auc_score(attacked, scores)),
        "recall_per_family": {
            family: float(flagged[families == family].mean())
            for family in sorted(set(families[attacked]))
        },
        "false_positive_rate_per_source": {
            source: float(flagged[(sources == source) & ~attacked].mean())
            for source in sorted(set(sources[~attacked]))
        },
        "per_task": {},
    }
    for source in sorted(set(sources[attacked])):
        mine = sources == source
        recall, at = recall_at_false_positive_rate(scores[mine], attacked[mine])
        report["per_task"][source] = {
            "attacked": int((mine & attacked).sum()),
            "clean": int((mine & ~attacked).sum()),
            "roc_auc": float(roc_auc_score(attacked[mine], scores[mine])),
            "recall_at_1pct_fpr": recall,
            "threshold_at_1pct_fpr": at,
        }
    return report


def _family_group(family: str) -> str:
    """BIPIA's categories grouped by kind (``bipia_text``, ``bipia_code``); templates as named."""
    return family.split(":", 1)[0]


# ---------------------------------------------------------------- building the shipped detector


def build_detector(
    datasets: str | Path,
    out: str | Path,
    *,
    seed: int = 0,
    recipe: str = DEFAULT_DETECTOR,
    limit: int | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build the corpus from ``datasets`` (the shared datasets folder), train the detector with
    ``stillhouse train`` (``recipe``: ``linear`` or ``encoder-ngrams``, one thread) on its
    training split and the windows of that split's long clean texts (:func:`clean_windows`), choose its
    threshold on the valid split, measure it on the test split, and write the model folder
    ``out`` (replaced if there). The same data, ``seed`` and package versions give the same
    bytes: the card's date is fixed and the timings (training time, measured speed) are left
    out. ``limit``: train on that many rows of a seeded shuffle of the training corpus (for
    quick checks). Returns the card."""
    from stillhouse.data.io import write_jsonl
    from stillhouse.guard.injection_corpus import CORPUS_VERSION, build_corpus, corpus_bytes
    from stillhouse.task import load_task
    from stillhouse.train import TrainSettings, train
    from stillhouse.train.card import write_card
    from stillhouse.train.folder import write_manifest

    log = say or (lambda message: None)
    corpus = {
        split: build_corpus(datasets, split, seed=seed) for split in ("train", "valid", "test")
    }
    training = corpus["train"]
    if limit is not None:
        training = random.Random(seed).sample(training, min(limit, len(training)))
    extra = clean_windows(training)
    training = training + extra
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".injection-build-", dir=out.parent) as scratch:
        work = Path(scratch)
        (work / "task.toml").write_text(_TASK_TOML, encoding="utf-8")
        data = work / "train.jsonl"
        write_jsonl(data, ({k: row[k] for k in ("id", "text", "label")} for row in training))
        settings = TrainSettings(
            recipe=recipe,
            seed=seed,
            threads=1,
            c=C,
            word_ngrams=WORD_NGRAMS,
            char_ngrams=CHAR_NGRAMS,
            latency_texts=1,
            throughput_texts=1,
        )
        log(f"training on {len(training)} rows")
        folder = work / "detector"
        card = train(load_task(work / "task.toml"), folder, settings, data=data, log=log).card
        detector = Detector(_open_unchecked(folder), threshold=1.0)

        valid_clean = [row for row in corpus["valid"] if row["label"] != INJECTION_LABEL]
        valid_scores = detector.scores([row["text"] for row in valid_clean])
        threshold = choose_threshold(valid_scores, [row["source"] for row in valid_clean])
        detector.threshold = threshold
        log(f"threshold {threshold:.6f}; measuring on the held-out families")
        card["created_at"] = BUILD_DATE
        card["train_seconds"] = 0.0
        card.pop("speed", None)
        card["training_data"]["origin"] = (
            f"stillhouse.guard.injection_corpus v{CORPUS_VERSION}, split train, seed {seed}"
            + (f", {len(training) - len(extra)} rows sampled" if limit is not None else "")
            + f", and the {len(extra)} windows of its long clean texts"
        )
        card[CARD_SECTION] = {
            "threshold": threshold,
            "window_chars": WINDOW_CHARS,
            "clean_windows_trained": len(extra),
            "threshold_rule": (
                "lowest score at which the false-positive rate on the valid split's clean texts "
                f"of every source ({', '.join(sorted({row['source'] for row in valid_clean}))}) "
                f"is at most {TARGET_FALSE_POSITIVE_RATE:.0%}"
            ),
            "corpus": {
                "version": CORPUS_VERSION,
                "seed": seed,
                "sha256": {
                    split: hashlib.sha256(corpus_bytes(rows)).hexdigest()
                    for split, rows in corpus.items()
                },
                "rows": {split: len(rows) for split, rows in corpus.items()},
            },
            "valid": held_out_report(detector, corpus["valid"]),
            "held_out": held_out_report(detector, corpus["test"]),
        }
        write_card(folder, card)
        readme = folder / "README.md"
        readme.write_text(
            readme.read_text(encoding="utf-8").replace(
                "| training time | 0.0 s |",
                "| training time | not recorded (the folder rebuilds bit-for-bit) |",
            )
            + _readme_section(card[CARD_SECTION]),
            encoding="utf-8",
        )
        write_manifest(folder)
        for file in folder.iterdir():  # safetensors writes 0600; a package's files are readable
            file.chmod(0o644)
        if out.exists():
            shutil.rmtree(out)
        folder.rename(out)
    return card


def clean_windows(rows: Sequence[dict[str, Any]], size: int = WINDOW_CHARS) -> list[dict[str, Any]]:
    """The windows (:func:`windows`) of every clean row longer than ``size``, each a clean row of
    its own (id ``<row id>-window-<i>``, position ``window``): the detector scores a long text
    by its windows, so it is trained on what a clean window looks like too. Without them the
    `encoder-ngrams` detector flagged 17 of 99 clean e-mails, for boilerplate sentences ("If you
    have any questions just reply to this email") it had only seen inside whole e-mails
    (bench/RESULTS.md)."""
    return [
        {**row, "id": f"{row['id']}-window-{i}", "text": piece, "position": "window"}
        for row in rows
        if row["label"] != INJECTION_LABEL and len(row["text"]) > size
        for i, piece in enumerate(windows(row["text"], size))
    ]


def _open_unchecked(folder: Path) -> TrainedModel:
    from stillhouse.train.load import load_model

    return load_model(folder, threads=1)


def _readme_section(section: dict[str, Any]) -> str:
    held, valid = section["held_out"], section["valid"]
    families = ", ".join(f"{name} {value:.3f}" for name, value in held["recall_per_family"].items())
    sources = ", ".join(
        f"{name} {value:.3f}" for name, value in held["false_positive_rate_per_source"].items()
    )
    tasks = "\n".join(
        f"| {name} | {task['attacked']} / {task['clean']} | {task['roc_auc']:.4f} | "
        f"{task['recall_at_1pct_fpr']:.3f} |"
        for name, task in held["per_task"].items()
    )
    return f"""
## Prompt-injection detector

Scores a text with the calibrated probability that it carries instructions aimed at the model
(a text longer than {section["window_chars"]} characters: that of its most suspicious window, runs of
whole sentences of at most {section["window_chars"]} characters); `stillhouse guard scan` and `stillhouse.guard.scan` flag it at threshold **{section["threshold"]:.6f}**
({section["threshold_rule"]}; valid false-positive rate {valid["false_positive_rate"]:.4f}).

Trained on `stillhouse.guard.injection_corpus` (version {section["corpus"]["version"]}, seed
{section["corpus"]["seed"]}): BIPIA's train-split attacks and the training template families in
banking77, NusaX English, BIPIA e-mail, WNUT17 social-media and Presidio synthetic texts, the same
texts clean, plus hard negatives, plus the {section["clean_windows_trained"]} windows of the long clean texts. Data: banking77 (CC BY 4.0), NusaX (CC BY-SA 4.0), BIPIA (MIT),
WNUT17 (CC BY 4.0), presidio-research synthetic data (MIT; fake names CC BY-SA 3.0 US). Measured
on the test split: held-out families (templates never trained on and BIPIA's test split) in
held-out texts.

At the shipped threshold: recall {held["recall"]:.3f} on {held["attacked"]} attacked texts,
false-positive rate {held["false_positive_rate"]:.4f} on {held["clean"]} clean ones; ROC AUC
{held["roc_auc"]:.4f}.

- recall per held-out family: {families}
- false-positive rate per source: {sources}

| task | attacked / clean | ROC AUC | recall at 1% FPR (that task's own threshold) |
|---|---|---|---|
{tasks}

Limitations: English only; the attacks are template families and BIPIA's, so an attack unlike
all of them (another language, a paraphrase with no telltale words) may pass.
"""
