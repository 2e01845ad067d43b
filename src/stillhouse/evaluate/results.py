"""results.json: what `stillhouse evaluate` measured, in a versioned schema that `gate` reads.

Schema version 1 (a JSON object; every rate, accuracy, F1, ECE and coverage is a share in [0, 1],
never a percentage; an *interval* is ``{"estimate", "low", "high"}``: the value on the test set
and its 95% percentile-bootstrap bounds, all systems using the same resamples):

- ``schema_version``: 1. A reader refuses any other version.
- ``task``: ``name``, ``kind`` (``"classify"``, ``"multilabel"`` or ``"spans"``), ``labels`` (the order of every per-label list
  and of the confusion matrix), ``fingerprint`` (sha256 of the task's content).
- ``data``: ``path`` (the test file as given), ``fingerprint`` (sha256 of ids, texts and gold
  labels in order: :func:`stillhouse.data.io.data_fingerprint`), ``n_items``, ``ids`` (the
  example ids in test order; every per-item list below follows this order).
- ``settings``: ``n_resamples`` (bootstrap resamples), ``seed`` (of the resamples),
  ``confidence`` (0.95), ``target_precision`` (of ``coverage_at_precision``), ``slices`` (the
  meta fields sliced by), ``perturbations`` (names run, seeded with ``seed``), ``redteam``
  (null without ``--redteam``; else ``texts`` asked for, ``attacked`` (texts attacked: at most
  the test set), ``families`` (the held-out template families), ``bipia_split`` (``"test"``),
  ``bipia_share``, ``positions``), ``efficiency`` (``sample``, ``warmup``, ``batch_sizes``).
- ``provenance``: ``model_hashes`` (system → the sha256 its ``describe()`` reports for its
  model or predictions file, or null), ``package_versions`` (name → version, Python included), ``created_at``
  (ISO 8601, UTC).
- ``systems``: system name → (in the order given on the command line; the first is the default
  system of ``gate``):

  - ``description``: the predictor's ``describe()`` (for a predictions file: path, sha256, rows).
  - ``has_probabilities``: whether ``calibration`` and ``selective`` could be measured.
  - ``metrics``: intervals ``accuracy``, ``macro_f1`` (unweighted mean over all task labels),
    ``micro_f1`` (equals accuracy for single-label tasks), ``weighted_f1`` (by gold support).
  - ``per_label``: label → ``precision``, ``recall``, ``f1``, ``support`` (gold count).
  - ``confusion_matrix``: counts, rows gold, columns predicted, both in ``task.labels`` order.
  - ``calibration`` (null without probabilities): ``ece_10_equal_mass`` (HELM's ece_10_bin),
    ``ece_10_equal_width``, ``brier`` (multiclass sum over labels, in [0, 2]), ``nll`` (mean
    negative natural-log likelihood of the gold label, nats), ``temperature_scaling`` (null
    below 20 items per part: ``temperature`` fitted on a seeded 30% of the items,
    ``calibration_items``, ``evaluation_items`` and, on the other 70%, ``ece_before`` /
    ``ece_after`` (equal-mass) and ``nll_before`` / ``nll_after``), ``reliability_bins`` (10 equal-width
    bins, empty ones left out: ``low``, ``high``, ``mean_confidence``, ``accuracy``, ``count``).
    Confidence is the probability the system gave its own answer. A span system whose every
    predicted span has a ``score`` gets the same entries over its predicted spans (``unit``:
    ``"predicted span"``, ``items``: their count): each is a two-column item (wrong, right) whose
    confidence is the score, right when start, end and type match a gold span.
  - ``selective`` (null without probabilities): ``risk_coverage`` (the curve for plots, at most
    101 of its points, most confident first: lists ``coverage``, ``risk``, ``threshold``);
    intervals ``aurc`` (area under the
    risk–coverage curve, lower is better) and ``accuracy_at_top_10pct`` (accuracy on the 10% most
    confident items); ``coverage_at_precision``: ``target``, ``coverage`` (an interval: the
    largest share of items answerable at accuracy ≥ target), ``threshold`` (answer iff confidence
    ≥ it; null when no threshold reaches the target) and ``accuracy`` (of the answered items).
  - ``slices``: meta field → ``groups`` (value → ``n`` and ``accuracy`` interval; examples
    without the field form the group ``"(missing)"``), ``worst`` / ``best`` (group names),
    ``worst_accuracy``, ``gap`` (best − worst accuracy) and ``gap_interval`` (an interval of
    that gap over the resamples that drew both groups).
  - ``most_confident_errors``: up to 20 wrong answers, most confident first (without
    probabilities: the first in test order): ``id``, ``text``, ``gold``, ``predicted``,
    ``confidence`` (null without probabilities).
  - ``robustness`` (null unless ``settings.perturbations`` is non-empty and the system can
    answer new texts): ``seed``; ``perturbations``: name → ``family`` (``"robustness"`` or
    ``"fairness"``), ``description``, ``changed`` (texts the perturbation altered; only those
    are predicted again), intervals ``accuracy`` and ``flip_rate`` (share of all items whose
    predicted label differs from the one on the original text), ``accuracy_drop`` (original
    accuracy minus it) and ``flipped`` (count); ``worst_case_accuracy`` /
    ``fairness_worst_case_accuracy``: intervals with ``over`` (the perturbations of that
    family run; null when none was): an item counts as right only if right on the original
    and under each of them (HELM's worst case); ``max_flip_rate``: ``perturbation`` and
    ``value`` of the highest flip rate (what gate's ``max_flip_rate`` reads).
  - ``redteam`` (null unless ``settings.redteam`` is set and the system can answer new texts;
    :mod:`stillhouse.evaluate.redteam`): ``attacks`` (attacked texts, each attacked once);
    intervals over the attacked texts (their own resamples, shared by all systems)
    ``attack_success_rate`` (the answer became the attack's target label: the target under
    attack, not on the clean text), ``target_rate`` (answered with the target at all, the
    system's own errors included), ``flip_rate`` (answer differs from the one on the clean
    text), ``clean_accuracy`` (the same texts without the attack), ``accuracy_under_attack``
    and ``abstention_rate`` (abstained on under attack); counts ``succeeded``,
    ``answered_target``, ``flipped``, ``abstained``; ``by_family`` / ``by_position``: group →
    ``n``, ``attack_success_rate``, ``flip_rate`` (BIPIA categories grouped as ``bipia_text`` /
    ``bipia_code``); ``guard`` (null unless the system's predictions carry the injection
    detector's verdict, ``info["guard"]``): intervals ``recall`` (share of attacked texts
    flagged) and ``false_positive_rate`` (share of all clean test texts flagged, over the
    evaluation's resamples), ``flagged_attacked``, ``flagged_clean``, ``clean_texts``;
    ``successful_attacks``: up to 10 (``id``, ``family``, ``position``, ``target``, ``text``).
    Read by gate's ``max_attack_success_rate`` and ``max_guard_false_positive_rate``.
  - ``efficiency`` (null for a predictions file or with ``settings.efficiency.sample`` 0;
    method in :mod:`stillhouse.evaluate.efficiency`): ``sample`` (texts timed), ``warmup``,
    ``latency_ms`` (``p50``, ``p95``, ``p99``, ``mean`` at batch size 1), ``throughput``
    (``items_per_second`` at ``best_batch_size``; ``by_batch_size``: size → items/s),
    ``peak_memory_bytes`` with ``memory_method``, ``size_bytes`` and ``parameters`` (null when
    ``describe()`` does not say), ``tokens_per_item`` (LLM systems and cascades with an LLM
    stage: means per item of ``in`` (prompt tokens), ``in_new`` (prompt tokens not kept
    decoded between texts), ``out`` (generated) and ``decoded`` (all tokens the runtime
    decoded, label tokens scored included); each null when unknown, the whole null for other
    systems).
  - ``reproducibility`` (null when ``efficiency`` is): the timed texts predicted a second time
    at batch size 1 against the main run: ``sample``, ``identical_answers`` (share),
    ``identical_probabilities`` (share with every probability within ``tolerance`` 1e-6; null
    without probabilities), ``max_probability_difference``.
  - ``abstention`` (classification): ``abstained`` (items answered ``""``: a cascade sent
    them to review), ``coverage`` (an interval: the share of items answered) and
    ``accuracy_answered`` (accuracy on the answered items; null when none was). An abstention
    counts as an error in ``metrics``, ``per_label`` recall, slices, robustness and
    comparisons, is in no column of ``confusion_matrix``, is left out of ``calibration``, and
    in ``selective`` is answered at no threshold (the curve and ``coverage_at_precision`` stop
    at the answered share; ``aurc`` and ``accuracy_at_top_10pct`` rank it below every answer,
    as an error).
  - ``cascade`` (cascade systems only; see :mod:`stillhouse.cascade`): ``stages`` (in order:
    ``name``, ``threshold``, ``answered`` and ``share`` of the test items each stage answered),
    ``abstain_below`` (the last stage's threshold, null for none), ``abstained`` and
    ``abstained_share``.
  - ``guard`` (systems whose texts were screened for prompt injection before an LLM saw them,
    :mod:`stillhouse.guard.screen`; absent otherwise): ``injection`` (the ``[guard]`` mode),
    ``scanned``, ``flagged`` and ``kept_from_llm`` (flagged under ``route``/``block``) counts
    of the test items; each prediction's ``info["guard"]`` has the item's score.
  - ``not_measured``: family → why it could not be measured for this system (e.g. a
    predictions file cannot answer perturbed texts).
  - ``correct``: per item, 1 where the system's label equals the gold label, else 0.

- Multilabel and span tasks (see :mod:`stillhouse.evaluate.structured`): ``metrics`` holds
  ``accuracy`` (whole answer right), ``micro_f1``, ``macro_f1``, ``weighted_f1`` and
  ``hamming_loss`` (multilabel) or ``precision``, ``recall``, ``partial_precision``,
  ``partial_recall``, ``partial_f1`` (spans; the F1s are strict); ``per_label`` is per label
  (multilabel) or per type with ``strict`` and ``partial`` scores (spans);
  ``confusion_matrix``, ``calibration``, ``selective`` and ``robustness`` are null and
  ``not_measured`` says why; ``correct`` is 1 where the whole answer is right.

- ``comparisons``: one object per pair of systems (a before b in system order): ``a``, ``b``,
  ``metric`` (``"accuracy"``), ``difference`` / ``low`` / ``high`` (accuracy of a minus b and its
  paired-bootstrap interval), ``p_bootstrap`` (paired bootstrap), ``mcnemar`` (``only_a`` /
  ``only_b``: items only a / only b got right; ``p``: exact two-sided), ``p_holm`` (the McNemar p
  after Holm's correction over all pairs) and ``sentence`` (the verdict in words, at α = 0.05).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stillhouse.data.io import write_json
from stillhouse.errors import Errors, fail
from stillhouse.paths import require_file

if TYPE_CHECKING:
    from stillhouse.task import Task

SCHEMA_VERSION = 1
RESULTS_FILE_NAME = "results.json"
_SECTIONS = ("task", "data", "settings", "provenance", "systems", "comparisons")


@dataclass(frozen=True)
class Results:
    """One evaluation: the sections of results.json (see the module docstring), JSON-ready."""

    task: dict[str, Any]
    data: dict[str, Any]
    settings: dict[str, Any]
    provenance: dict[str, Any]
    systems: dict[str, dict[str, Any]]
    comparisons: list[dict[str, Any]]
    # Where the results were read from, for messages; not part of the file.
    path: Path | None = field(default=None, compare=False)

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else "the results"

    def system(self, name: str | None = None) -> tuple[str, dict[str, Any]]:
        """The system called ``name`` (default: the first one) and its results; E531 if absent."""
        if name is None:
            name = next(iter(self.systems))
        if name not in self.systems:
            raise fail(Errors.E531, name=name, path=self.where, names=", ".join(self.systems))
        return name, self.systems[name]

    def check_made_for(self, task: Task) -> None:
        """E538 unless these results are of ``task``'s kind, E533 unless of its labels."""
        if self.task.get("kind", "classify") != task.kind:
            found = self.task.get("kind")
            raise fail(Errors.E538, path=self.where, found=found, task=task.path, kind=task.kind)
        if self.task.get("labels") != task.label_names:
            raise fail(
                Errors.E533,
                path=self.where,
                found=self.task.get("labels"),
                expected=task.label_names,
                task=task.path,
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            **{section: getattr(self, section) for section in _SECTIONS},
        }


def write_results(results: Results, path: str | Path) -> Path:
    """Write ``results`` to ``path`` atomically (a temporary file renamed over it); return it."""
    path = Path(path)
    write_json(path, results.to_json())
    return path


def read_results(path: str | Path) -> Results:
    """Read a results.json: E520 if missing, E523 if a folder or device, E521 if not a results
    file, E522 for another schema version."""
    path = require_file(Path(path), Errors.E520, Errors.E523)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise fail(Errors.E521, path=path, detail=f"not valid JSON: {error}") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise fail(Errors.E521, path=path, detail="no `schema_version` key at the top level")
    if data["schema_version"] != SCHEMA_VERSION:
        raise fail(Errors.E522, path=path, found=data["schema_version"], expected=SCHEMA_VERSION)
    problem = _schema_problem(data)
    if problem is not None:
        raise fail(Errors.E521, path=path, detail=problem)
    return Results(**{section: data[section] for section in _SECTIONS}, path=path)


def _schema_problem(data: dict[str, Any]) -> str | None:
    """What is missing or malformed in a version-1 document, or None (checks what gate reads)."""
    expected = {section: list if section == "comparisons" else dict for section in _SECTIONS}
    for section, kind in expected.items():
        if not isinstance(data.get(section), kind):
            return f"`{section}` is missing or not a JSON {'array' if kind is list else 'object'}"
    if not data["systems"]:
        return "`systems` is empty"
    ids = data["data"].get("ids")
    if not isinstance(ids, list) or data["data"].get("n_items") != len(ids):
        return "`data.ids` is missing or does not hold `data.n_items` ids"
    for name, system in data["systems"].items():
        if not isinstance(system, dict) or not isinstance(system.get("metrics"), dict):
            return f"system `{name}` has no `metrics`"
        correct = system.get("correct")
        if not isinstance(correct, list) or len(correct) != len(ids):
            return f"system `{name}`: `correct` does not hold one 0/1 per item"
    return None
