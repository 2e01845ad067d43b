"""gate: the production contract of task.toml ``[gate]``, checked against a results.json and/or
a monitor.json.

Each rule gives one :class:`GateRow`: what was measured, the threshold, the verdict and why. A
rule whose measurement is not in results.json fails ("not measured in results.json"), never
passes silently. For multilabel and span tasks ``accuracy`` is whole-answer accuracy (subset
accuracy; documents with exactly the right spans) and ``macro_f1`` as evaluate defines it; the
classification-only families read as not measured. Rules (task.GATE_RULES)::

    min_accuracy = 0.90                  # accuracy ≥ it
    min_macro_f1 = 0.85                  # macro-F1 ≥ it
    min_coverage_at_precision = { precision = 0.99, coverage = 0.60 }
    max_ece = 0.05                       # ECE, 10 equal-mass bins (HELM's ece_10_bin) ≤ it
    max_p95_latency_ms = 50              # p95 latency at batch size 1 (efficiency) ≤ it
    max_flip_rate = 0.02                 # highest flip rate over the --perturb perturbations ≤ it
    min_worst_slice_accuracy = 0.80      # lowest accuracy of any --slice group ≥ it
    no_significant_regression = true     # vs --baseline: accuracy not significantly lower
    max_attack_success_rate = 0.05       # share of --redteam attacks turned to their target ≤ it
    max_guard_false_positive_rate = 0.01 # share of clean test texts the injection guard flags ≤ it

Rules that read a monitor.json (``stillhouse monitor``: the served system's logged predictions)::

    max_label_psi = 0.25                 # PSI of the predicted labels vs the baseline ≤ it
    max_abstention_rate = 0.10           # share of logged predictions abstained on ≤ it
    min_estimated_accuracy = 0.85        # accuracy estimated from calibrated confidences ≥ it

Each document checks the rules that read it: with ``--results`` only, the monitor rules are
listed as not checked (``GateReport.not_checked``), and the reverse; a document given that no
rule reads is an error (E847), as is giving neither (E846). A monitor rule whose value
monitor.json lacks fails ("not measured in monitor.json"), as for results.json.

Point estimates are compared with the thresholds; the reason shows the 95% interval too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from stillhouse.errors import Errors, fail
from stillhouse.evaluate.paired import mcnemar_exact
from stillhouse.evaluate.results import Results
from stillhouse.monitor.report import Monitor
from stillhouse.task import GATE_RULES, Task

ALPHA = 0.05
NOT_MEASURED = "not measured in results.json"
NOT_MEASURED_MONITOR = "not measured in monitor.json"
MONITOR_RULES = ("max_label_psi", "max_abstention_rate", "min_estimated_accuracy")


@dataclass(frozen=True)
class GateRow:
    """One rule's verdict: ``measured`` is None when results.json lacks the measurement."""

    rule: str
    measured: float | None
    threshold: Any  # the rule's value in task.toml
    condition: str  # the threshold in words, e.g. "≥ 0.900"
    passed: bool
    reason: str


@dataclass(frozen=True)
class GateReport:
    """The verdict on one system: passed iff every rule passed."""

    system: str
    rows: tuple[GateRow, ...]
    # enabled rules that read a document not given (monitor rules without --monitor, …)
    not_checked: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    @property
    def failed(self) -> list[GateRow]:
        return [row for row in self.rows if not row.passed]


@dataclass(frozen=True)
class _Context:
    name: str
    system: dict[str, Any]
    results: Results
    baseline: Results | None


def gate(
    task: Task,
    results: Results | None,
    baseline: Results | None = None,
    system: str | None = None,
    *,
    monitor: Monitor | None = None,
) -> GateReport:
    """Check ``task.gate`` against ``results`` for ``system`` (default: its first system), and
    its monitor rules against ``monitor``.

    ``baseline``: the results the ``no_significant_regression`` rule compares with; it must have
    been computed on the same test data (E532). ``system`` names a system of ``results``; with
    ``monitor`` alone, the monitored one. Bad input raises: E004 (a rule's value), E530 (no
    rules), E531 (unknown system), E931 (a malformed ``redteam`` block), E533 (other labels), E538 (another task kind), E845 (a
    monitor.json of another task), E846 (neither document), E847 (a document no rule reads).
    """
    rules = _rules(task)
    result_rules = [(rule, value) for rule, value in rules if rule not in MONITOR_RULES]
    monitor_rules = [(rule, value) for rule, value in rules if rule in MONITOR_RULES]
    if results is None and monitor is None:
        raise fail(Errors.E846)
    if baseline is not None and results is None:
        expected = "given with --results (the no_significant_regression rule compares the two)"
        raise fail(Errors.E515, what="--baseline", expected=expected, value=str(baseline.where))
    results_only = [rule for rule in GATE_RULES if rule not in MONITOR_RULES]
    for given, wanted, names, document, option, example in (
        (results, result_rules, results_only, "results.json", "--results", "min_accuracy = 0.9"),
        (
            monitor,
            monitor_rules,
            MONITOR_RULES,
            "monitor.json",
            "--monitor",
            "max_label_psi = 0.25",
        ),
    ):
        if given is not None and not wanted:
            raise fail(
                Errors.E847,
                path=task.path,
                document=document,
                rules=", ".join(names),
                example=example,
                option=option,
            )
    rows: list[GateRow] = []
    name = None
    if results is not None:
        name, result_rows = _check_results(task, results, baseline, system, result_rules)
        rows += result_rows
    if monitor is not None:
        _check_monitor_task(task, monitor)
        if results is None:
            if system is not None and system != monitor.system:
                raise fail(Errors.E531, name=system, path=monitor.where, names=monitor.system)
            name = monitor.system
        rows += [_MONITOR_CHECKS[rule](value, monitor) for rule, value in monitor_rules]
    not_checked = [rule for rule, _ in result_rules if results is None]
    not_checked += [rule for rule, _ in monitor_rules if monitor is None]
    assert name is not None
    return GateReport(name, tuple(rows), tuple(not_checked))


def _check_results(
    task: Task,
    results: Results,
    baseline: Results | None,
    system: str | None,
    rules: list[tuple[str, Any]],
) -> tuple[str, list[GateRow]]:
    results.check_made_for(task)
    name, measured = results.system(system)
    context = _Context(name, measured, results, baseline)
    return name, [_CHECKS[rule](value, context) for rule, value in rules]


def _check_monitor_task(task: Task, monitor: Monitor) -> None:
    """E845 unless ``monitor`` was made for ``task`` (name, kind and labels)."""
    found = monitor.document["task"]
    if (found.get("name"), found.get("kind"), found.get("labels")) != (
        task.name,
        task.kind,
        task.label_names,
    ):
        raise fail(
            Errors.E845,
            path=monitor.where,
            found=found.get("name"),
            found_kind=found.get("kind"),
            found_labels=found.get("labels"),
            task=task.path,
            expected=task.name,
            kind=task.kind,
            labels=task.label_names,
        )


def _rules(task: Task) -> list[tuple[str, Any]]:
    """The enabled rules in GATE_RULES order, each value checked (E004 names the key)."""
    rules = []
    for rule in GATE_RULES:
        if rule not in task.gate:
            continue
        value = task.gate[rule]
        problem = _value_problem(rule, value)
        if problem is not None:
            raise fail(Errors.E004, path=task.path, key=f"gate.{rule}", detail=problem)
        if value is not False:  # no_significant_regression = false turns the rule off
            rules.append((rule, value))
    if not rules:
        raise fail(Errors.E530, path=task.path, rules=", ".join(GATE_RULES))
    return rules


def _value_problem(rule: str, value: Any) -> str | None:
    if rule == "no_significant_regression":
        return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    if rule == "min_coverage_at_precision":
        if not isinstance(value, dict) or set(value) != {"precision", "coverage"}:
            return f"expected {{ precision = 0.99, coverage = 0.60 }}, got {value!r}"
        if not (_is_number(value["precision"]) and 0 < value["precision"] <= 1):
            return f"precision must be a number in (0, 1], got {value['precision']!r}"
        if not (_is_number(value["coverage"]) and 0 <= value["coverage"] <= 1):
            return f"coverage must be a number in [0, 1], got {value['coverage']!r}"
        return None
    if rule == "max_p95_latency_ms":
        ok = _is_number(value) and value > 0
        return None if ok else f"expected a number of milliseconds > 0, got {value!r}"
    if rule == "max_label_psi":
        ok = _is_number(value) and 0 <= value < float("inf")
        return None if ok else f"expected a PSI ≥ 0 (0.1 moderate, 0.25 major shift), got {value!r}"
    ok = _is_number(value) and 0 <= value <= 1
    return None if ok else f"expected a share between 0 and 1 (not a percentage), got {value!r}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _at_least(rule: str, metric: str, shown: str) -> Callable[[Any, _Context], GateRow]:
    def check(value: float, context: _Context) -> GateRow:
        interval = context.system["metrics"][metric]
        estimate = interval["estimate"]
        passed = estimate >= value
        reason = (
            f"{shown} {estimate:.3f} (95% CI {interval['low']:.3f}–"
            f"{interval['high']:.3f}) {'≥' if passed else '<'} {value:.3f}"
        )
        return GateRow(rule, estimate, value, f"≥ {value:.3f}", passed, reason)

    return check


def _coverage_at_precision(value: dict[str, float], context: _Context) -> GateRow:
    rule, precision, coverage = "min_coverage_at_precision", value["precision"], value["coverage"]
    condition = f"coverage ≥ {coverage:.2f} at precision {precision:g}"
    selective = context.system.get("selective")
    if selective is None:
        return _not_measured(rule, value, condition, "the system gave no probabilities")
    measured = selective["coverage_at_precision"]
    if measured["target"] != precision:
        detail = (
            f"it has coverage at precision {measured['target']:g}; "
            f"run evaluate with --target-precision {precision:g}"
        )
        return _not_measured(rule, value, condition, detail)
    interval = measured["coverage"]
    passed = interval["estimate"] >= coverage
    threshold = measured["threshold"]
    at = f"answering iff confidence ≥ {threshold:.4f}" if threshold is not None else "no threshold"
    reason = (
        f"coverage {interval['estimate']:.3f} (95% CI {interval['low']:.3f}–{interval['high']:.3f}) "
        f"at precision {precision:g}, {at}; {'≥' if passed else '<'} {coverage:.2f}"
    )
    return GateRow(rule, interval["estimate"], value, condition, passed, reason)


def _max_ece(value: float, context: _Context) -> GateRow:
    condition = f"≤ {value:.3f}"
    calibration = context.system.get("calibration")
    if calibration is None:
        return _not_measured("max_ece", value, condition, "the system gave no probabilities")
    ece = calibration["ece_10_equal_mass"]
    passed = ece <= value
    reason = f"ECE (10 equal-mass bins) {ece:.3f} {'≤' if passed else '>'} {value:.3f}"
    return GateRow("max_ece", ece, value, condition, passed, reason)


def _max_p95_latency(value: float, context: _Context) -> GateRow:
    rule, condition = "max_p95_latency_ms", f"≤ {value:g} ms"
    efficiency = context.system.get("efficiency")
    if efficiency is None:
        why = _why_absent(context, "efficiency", "evaluate with --efficiency-sample N (N > 0)")
        return _not_measured(rule, value, condition, why)
    latency = efficiency["latency_ms"]
    passed = latency["p95"] <= value
    reason = (
        f"p95 latency at batch size 1 {latency['p95']:.2f} ms (p50 {latency['p50']:.2f}, "
        f"p99 {latency['p99']:.2f}; {efficiency['sample']} texts) "
        f"{'≤' if passed else '>'} {value:g} ms"
    )
    return GateRow(rule, latency["p95"], value, condition, passed, reason)


def _max_flip_rate(value: float, context: _Context) -> GateRow:
    rule, condition = "max_flip_rate", f"≤ {value:.3f}"
    robustness = context.system.get("robustness")
    if robustness is None or robustness.get("max_flip_rate") is None:
        why = _why_absent(context, "robustness", "evaluate with --perturb")
        return _not_measured(rule, value, condition, why)
    name = robustness["max_flip_rate"]["perturbation"]
    flip_rate = robustness["perturbations"][name]["flip_rate"]
    passed = flip_rate["estimate"] <= value
    reason = (
        f"highest flip rate, under {name}: {flip_rate['estimate']:.3f} (95% CI "
        f"{flip_rate['low']:.3f}–{flip_rate['high']:.3f}) {'≤' if passed else '>'} {value:.3f}"
    )
    return GateRow(rule, flip_rate["estimate"], value, condition, passed, reason)


def _worst_slice(value: float, context: _Context) -> GateRow:
    rule, condition = "min_worst_slice_accuracy", f"≥ {value:.3f}"
    slices = context.system.get("slices") or {}
    if not slices:
        return _not_measured(rule, value, condition, "evaluate with --slice FIELD")
    field = min(slices, key=lambda name: slices[name]["worst_accuracy"])
    worst = slices[field]["worst"]
    accuracy = slices[field]["groups"][worst]["accuracy"]
    passed = accuracy["estimate"] >= value
    reason = (
        f"worst slice {field}={worst} (n={slices[field]['groups'][worst]['n']}): accuracy "
        f"{accuracy['estimate']:.3f} (95% CI {accuracy['low']:.3f}–{accuracy['high']:.3f}) "
        f"{'≥' if passed else '<'} {value:.3f}"
    )
    return GateRow(rule, accuracy["estimate"], value, condition, passed, reason)


def _no_significant_regression(value: bool, context: _Context) -> GateRow:
    rule, condition = "no_significant_regression", f"accuracy not significantly lower (α={ALPHA:g})"
    baseline = context.baseline
    if baseline is None:
        return GateRow(
            rule, None, value, condition, False, "needs a baseline: pass --baseline results.json"
        )
    if baseline.data.get("fingerprint") != context.results.data.get("fingerprint"):
        raise fail(
            Errors.E532,
            baseline=baseline.where,
            results=context.results.where,
            baseline_fingerprint=str(baseline.data.get("fingerprint")),
            results_fingerprint=str(context.results.data.get("fingerprint")),
        )
    if context.name not in baseline.systems:
        reason = (
            f"the baseline has no system `{context.name}` "
            f"(it has: {', '.join(baseline.systems)}); pass --system"
        )
        return GateRow(rule, None, value, condition, False, reason)
    current = np.array(context.system["correct"])
    before = np.array(baseline.systems[context.name]["correct"])
    difference = float(current.mean() - before.mean())
    p_value = mcnemar_exact(current, before).p_value
    regressed = difference < 0 and p_value < ALPHA
    verdict = "a significant regression" if regressed else "no significant regression"
    reason = (
        f"accuracy {current.mean():.3f} vs baseline {before.mean():.3f} "
        f"({difference * 100:+.1f} points, McNemar exact p={p_value:.3g}): {verdict}"
    )
    return GateRow(rule, difference, value, condition, not regressed, reason)


def _max_attack_success_rate(value: float, context: _Context) -> GateRow:
    rule, condition = "max_attack_success_rate", f"≤ {value:.3f}"
    redteam = _redteam(context)
    if redteam is None:
        why = _why_absent(context, "redteam", "evaluate with --redteam")
        return _not_measured(rule, value, condition, why)
    rate = _redteam_interval(context, redteam, "attack_success_rate")
    passed = rate["estimate"] <= value
    reason = (
        f"attack success rate {rate['estimate']:.3f} (95% CI {rate['low']:.3f}–"
        f"{rate['high']:.3f}; {redteam.get('succeeded')} of {redteam.get('attacks')} attacked "
        f"texts turned to the attacker's label) {'≤' if passed else '>'} {value:.3f}"
    )
    return GateRow(rule, rate["estimate"], value, condition, passed, reason)


def _max_guard_false_positive_rate(value: float, context: _Context) -> GateRow:
    rule, condition = "max_guard_false_positive_rate", f"≤ {value:.3f}"
    redteam = _redteam(context)
    if redteam is None:
        why = _why_absent(context, "redteam", "evaluate with --redteam")
        return _not_measured(rule, value, condition, why)
    guard = redteam.get("guard")
    if guard is None:
        why = "the system runs no injection guard: its predictions carry no detector verdict"
        return _not_measured(rule, value, condition, why)
    if not isinstance(guard, dict):
        raise _malformed(context, "`guard` is not an object")
    rate = _redteam_interval(context, guard, "false_positive_rate")
    passed = rate["estimate"] <= value
    reason = (
        f"injection guard false-positive rate {rate['estimate']:.3f} (95% CI {rate['low']:.3f}–"
        f"{rate['high']:.3f}; {guard.get('flagged_clean')} of {guard.get('clean_texts')} clean "
        f"test texts flagged) {'≤' if passed else '>'} {value:.3f}"
    )
    return GateRow(rule, rate["estimate"], value, condition, passed, reason)


def _redteam(context: _Context) -> dict[str, Any] | None:
    """The system's ``redteam`` block (None when not measured); E931 when it is not an object."""
    redteam = context.system.get("redteam")
    if redteam is not None and not isinstance(redteam, dict):
        raise _malformed(context, "it is not an object")
    return redteam


def _redteam_interval(context: _Context, block: dict[str, Any], key: str) -> dict[str, float]:
    """``block[key]``, an interval of shares; E931 names what is wrong with it."""
    interval = block.get(key)
    if not isinstance(interval, dict) or not all(
        _is_number(interval.get(part)) and 0 <= interval[part] <= 1
        for part in ("estimate", "low", "high")
    ):
        detail = f"`{key}` is {interval!r}, not an interval of shares {{estimate, low, high}}"
        raise _malformed(context, detail)
    return interval


def _malformed(context: _Context, detail: str) -> Exception:
    return fail(Errors.E931, path=context.results.where, name=context.name, detail=detail)


def _not_measured(rule: str, value: Any, condition: str, detail: str) -> GateRow:
    return GateRow(rule, None, value, condition, False, f"{NOT_MEASURED} ({detail})")


def _why_absent(context: _Context, section: str, how_to_measure: str) -> str:
    """evaluate's reason for leaving ``section`` out, else how to measure it."""
    return (context.system.get("not_measured") or {}).get(section, how_to_measure)


# --- monitor.json rules ----------------------------------------------------------------------


def _max_label_psi(value: float, monitor: Monitor) -> GateRow:
    rule, condition = "max_label_psi", f"≤ {value:.3f}"
    shift = monitor.section("label_shift")
    if shift is None:
        why = monitor.why_not_measured("label_shift", "run monitor with --baseline")
        return _not_measured_monitor(rule, value, condition, why)
    psi, passed = shift["psi"], shift["psi"] <= value
    chi = shift.get("chi_square") or {}
    noise = shift.get("expected_without_shift")
    reason = (
        f"label PSI of `{monitor.system}` {psi:.3f} ({shift.get('level')}; "
        + (f"≈{noise:.3f} from sampling noise alone, " if noise is not None else "")
        + f"chi-square p={chi.get('p_value', float('nan')):.3g}; "
        f"{shift.get('window_answers')} answers vs {shift.get('baseline_answers')}) "
        f"{'≤' if passed else '>'} {value:.3f}"
    )
    return GateRow(rule, psi, value, condition, passed, reason)


def _max_abstention_rate(value: float, monitor: Monitor) -> GateRow:
    rule, condition = "max_abstention_rate", f"≤ {value:.3f}"
    abstention = monitor.section("abstention")
    rate = abstention["rate"]
    passed = rate["estimate"] <= value
    predictions = monitor.document["window"].get("predictions")
    reason = (
        f"abstention rate of `{monitor.system}` {rate['estimate']:.3f} (95% CI "
        f"{rate['low']:.3f}–{rate['high']:.3f}; {abstention.get('count')} of {predictions} "
        f"predictions) {'≤' if passed else '>'} {value:.3f}"
    )
    return GateRow(rule, rate["estimate"], value, condition, passed, reason)


def _min_estimated_accuracy(value: float, monitor: Monitor) -> GateRow:
    rule, condition = "min_estimated_accuracy", f"≥ {value:.3f}"
    estimate = monitor.section("estimated_accuracy")
    if estimate is None:
        why = monitor.why_not_measured("estimated_accuracy", "the system logs no confidences")
        return _not_measured_monitor(rule, value, condition, why)
    passed = estimate["estimate"] >= value
    reason = (
        f"estimated accuracy of `{monitor.system}` {estimate['estimate']:.3f} (95% "
        f"{estimate['low']:.3f}–{estimate['high']:.3f}, from the calibrated confidences of "
        f"{estimate.get('n')} predictions; abstentions count as errors) "
        f"{'≥' if passed else '<'} {value:.3f}"
    )
    return GateRow(rule, estimate["estimate"], value, condition, passed, reason)


def _not_measured_monitor(rule: str, value: Any, condition: str, detail: str) -> GateRow:
    return GateRow(rule, None, value, condition, False, f"{NOT_MEASURED_MONITOR} ({detail})")


_MONITOR_CHECKS: dict[str, Callable[[Any, Monitor], GateRow]] = {
    "max_label_psi": _max_label_psi,
    "max_abstention_rate": _max_abstention_rate,
    "min_estimated_accuracy": _min_estimated_accuracy,
}

_CHECKS: dict[str, Callable[[Any, _Context], GateRow]] = {
    "min_accuracy": _at_least("min_accuracy", "accuracy", "accuracy"),
    "min_macro_f1": _at_least("min_macro_f1", "macro_f1", "macro-F1"),
    "min_coverage_at_precision": _coverage_at_precision,
    "max_ece": _max_ece,
    "max_p95_latency_ms": _max_p95_latency,
    "max_flip_rate": _max_flip_rate,
    "min_worst_slice_accuracy": _worst_slice,
    "no_significant_regression": _no_significant_regression,
    "max_attack_success_rate": _max_attack_success_rate,
    "max_guard_false_positive_rate": _max_guard_false_positive_rate,
}
