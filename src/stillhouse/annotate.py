"""annotate: the LLM labels every text of a data file, stored in the workspace, cached, resumable.

Work goes in batches; each batch's annotations and cache entries are committed in one
transaction. A run killed at any point keeps every committed batch, and the next run with the
same task, model and prompt skips the examples that are already annotated.

Before any text is sent, the texts to annotate are screened for prompt injection (``[guard]
injection``, :mod:`stillhouse.guard.screen`; the text as in the data): under ``route`` and
``block`` a flagged text is not sent and gets no annotation; it goes to the review queue
``injection`` with its score (annotate has no small model to route it to). Under ``flag`` it is
annotated and the annotation's ``info["guard"]`` carries the flag. The summary counts them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stillhouse.data.io import data_fingerprint, read_examples
from stillhouse.data.records import Annotation, Example, answer_from_json, answer_to_json
from stillhouse.data.store import INJECTION_QUEUE, PRIVACY_QUEUE, ReviewItem, Store
from stillhouse.errors import Errors, fail
from stillhouse.evaluate.intervals import wilson_interval
from stillhouse.guard.privacy import BLOCKED_REASON, PrivacySettings
from stillhouse.guard.screen import guard_info, keeps_from_llm, screen_texts, threshold_of
from stillhouse.llm.answer import METHODS, LLMAnswer, Method, content_free_probs
from stillhouse.llm.backend import Backend, BackendSettings, open_backend
from stillhouse.llm.batches import CacheLookup, answer_batches
from stillhouse.llm.prompts import prompt_fingerprint
from stillhouse.llm.shortlist import (
    SHORTLIST_VERSION,
    Plan,
    shortlist_size,
    shortlister_for,
)
from stillhouse.output_guard import Output, check_outputs
from stillhouse.provenance import json_sha256
from stillhouse.task import GuardSection, Task

if TYPE_CHECKING:
    from stillhouse.scale.engine import Engine

# progress(done, total) after every batch
Progress = Callable[[int, int], None]
# The reason each text kept from the LLM by [guard] carries in the review queue ``injection``.
INJECTION_REASON = "injection_flagged"
# Texts screened per detector call (bounded memory on a large file)
_SCREEN_CHUNK = 1024


@dataclass(frozen=True)
class AnnotateSummary:
    """What an annotate run did; ``accuracy`` is against gold labels in the input, if any."""

    run_id: str
    annotator: str
    model: str
    method: str
    examples: int
    annotated: int  # newly annotated in this run
    resumed: int  # already annotated by this annotator before the run
    cache_hits: int
    seconds: float
    truncated: int
    invalid: int  # generate method: replies that matched no label
    dropped_spans: int
    probabilities: bool  # whether per-label probabilities are available
    n_gold: int
    accuracy: float | None
    accuracy_interval: tuple[float, float] | None
    label_counts: dict[str, int]
    mean_confidence: float | None
    skipped_rows: list[str] = field(default_factory=list)
    store: str = ""
    # [privacy] on a remote backend: mode and counts per entity type (never values); the texts
    # it blocked went to the review queue ``privacy`` and have no annotation.
    privacy: dict[str, Any] | None = None
    privacy_blocked: int = 0
    # [guard] injection: mode and threshold (None: off); texts the detector flagged in this run,
    # and of those the ones kept from the LLM (route/block) and put in the review queue
    # ``injection`` (they have no annotation).
    guard: dict[str, Any] | None = None
    injection_flagged: int = 0
    injection_queued: int = 0

    @property
    def examples_per_second(self) -> float:
        return self.annotated / self.seconds if self.seconds > 0 else 0.0

    @property
    def cache_hit_rate(self) -> float:
        return self.cache_hits / self.annotated if self.annotated else 0.0


def backend_settings(task: Task, **overrides: Any) -> BackendSettings:
    llm = task.llm
    values = {
        "n_ctx": llm.n_ctx,
        "threads": llm.threads,
        "seed": llm.seed,
        "max_new_tokens": llm.max_new_tokens,
        "concurrency": llm.concurrency,
        "timeout_s": llm.timeout_s,
        "api_key_env": llm.api_key_env,
        "score_tolerance": llm.score_tolerance,
        "privacy": PrivacySettings(
            task.privacy.remote, task.privacy.entities, task.privacy.score_threshold
        ),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return BackendSettings(**values)


def annotator_id(model: str, task: Task, method: str, shots: int) -> str:
    """``llm:<model>@<prompt hash>``; the hash covers the prompt and the method."""
    fingerprint = prompt_fingerprint(task, shots)
    if method != "score":
        fingerprint = json_sha256([fingerprint, method])[:8]
    if k := shortlist_size(task):  # label shortlists answer differently: another annotator
        cover = task.llm.shortlist_cover
        fingerprint = json_sha256([fingerprint, "shortlist", k, SHORTLIST_VERSION, cover])[:8]
    return f"llm:{model}@{fingerprint}"


def annotate(
    task: Task,
    input_path: str | Path,
    *,
    model: str | None = None,
    limit: int | None = None,
    method: Method = "score",
    shots: int | None = None,
    unlabelled_only: bool = False,
    use_cache: bool = True,
    skip_invalid: bool = False,
    threads: int | None = None,
    progress: Progress | None = None,
    backend: Backend | None = None,
    engine: Engine | None = None,
    shortlist: int | None = None,
) -> AnnotateSummary:
    """Annotate the texts of ``input_path`` with the LLM; results go to the task's store.

    ``model`` overrides ``[llm].model``; ``limit`` keeps the first N rows; ``shots`` overrides
    ``[llm].shots`` (k nearest labelled examples from the same file). ``unlabelled_only`` asks
    the LLM only about rows without a gold label (the labelled ones are still stored, and serve
    as shots); the summary then counts those rows only. Pass an open ``backend`` to reuse a
    loaded model across calls. ``engine`` ``ray``: the LLM runs in Ray actors (one model each,
    :mod:`stillhouse.scale`); this process still writes the store, batch by batch.
    ``shortlist`` overrides ``[llm].shortlist`` (label shortlists, :mod:`stillhouse.llm.shortlist`).
    """
    if method not in METHODS:
        raise fail(Errors.E403, what="method", value=method, choices=", ".join(METHODS))
    if shortlist is not None:
        shortlist_size(task, shortlist)  # E560/E561 name --shortlist
        task = task.model_copy(update={"llm": task.llm.model_copy(update={"shortlist": shortlist})})
    shortlist_size(task)  # E560/E561 before any work
    report = read_examples(input_path, task, skip_invalid=skip_invalid)
    examples = report.examples[:limit] if limit is not None else report.examples
    shots = task.llm.shots if shots is None else shots
    model_spec = model or task.llm.model
    if shots and not any(e.gold is not None for e in report.examples):
        raise fail(Errors.E402, shots=shots, path=input_path)
    # the store is this command's output: writable, with room, before the model loads
    check_outputs([Output("the store of --task", task.store_path)], [])
    with Store.for_task(task, create=True) as store:
        # The store's task and the texts under known ids are checked before the model loads.
        store.check_examples(examples)
        own_backend = backend is None
        if backend is None and engine is not None and engine.kind == "ray":
            from stillhouse.scale.llm import open_ray_llm

            settings = backend_settings(task, threads=threads)
            backend = open_ray_llm(model_spec, settings, task, engine)
        backend = backend or open_backend(model_spec, backend_settings(task, threads=threads))
        try:
            if method == "score" and not backend.can_score and task.kind != "spans":
                method = "constrained"  # a remote server gives no label likelihoods
            annotator = annotator_id(model_spec, task, method, shots)
            return _run(
                task,
                store,
                backend,
                examples,
                [e for e in examples if e.gold is None] if unlabelled_only else examples,
                annotator,
                method,
                shots,
                use_cache,
                progress,
                report.skipped,
                model_spec,
                data_fingerprint(examples),
            )
        finally:
            if own_backend:
                backend.close()


def _run(
    task: Task,
    store: Store,
    backend: Backend,
    examples: Sequence[Example],
    targets: Sequence[Example],
    annotator: str,
    method: Method,
    shots: int,
    use_cache: bool,
    progress: Progress | None,
    skipped: list[str],
    model_spec: str,
    data_hash: str,
) -> AnnotateSummary:
    store.add_examples(examples, task.kind)
    gold = [Annotation(e.id, "gold", e.gold) for e in examples if e.gold is not None]
    if gold:
        store.add_annotations(gold, task.kind)
    done_before = store.annotated_ids(annotator)
    todo = [e for e in targets if e.id not in done_before]
    run_id = store.start_run(
        "annotate",
        task_hash=task.fingerprint(),
        data_hash=data_hash,
        model=model_spec,
        model_sha256=backend.model_sha256,
        seed=task.llm.seed,
    )
    started = time.perf_counter()
    hits = truncated = 0
    blocked: list[ReviewItem] = []
    blocked_count = 0
    guard = task.guard if task.guard.injection != "off" else None
    guards: dict[str, dict[str, Any]] = {}  # example id -> info["guard"]
    queued: list[ReviewItem] = []
    # Whatever ends the run, its row says how: finished, interrupted (Ctrl-C) or failed; a run
    # killed outright is marked interrupted by the next start_run.
    status = "failed"
    try:
        # label shortlists (seed: the input's labelled rows) also pick the demonstrations
        shortlister = shortlister_for(task, examples)
        selector = None
        if shots and shortlister is None:
            from stillhouse.llm.fewshot import NeighbourSelector

            selector = NeighbourSelector(examples, shots)
        prior = None
        if task.kind == "classify" and method == "score" and task.llm.contextual_calibration:
            prior = content_free_probs(backend, task)
        if guard is not None:  # [guard]: what is flagged and kept is queued before anything is sent
            guards, queued = _screen(todo, guard)
            store.add_to_review_queue(INJECTION_QUEUE, queued)
            kept = {item.example_id for item in queued}
            todo = [e for e in todo if e.id not in kept]
        size = task.llm.batch_size
        chunks = [todo[start : start + size] for start in range(0, len(todo), size)]
        plans: dict[str, Plan] = {}

        def demonstrations(b: Sequence[Example]) -> list[list[Example]]:
            if shortlister is None:
                return selector.select(b) if selector else [[] for _ in b]
            ids = [e.id for e in b]
            plans.update(zip(ids, shortlister.plan([e.text for e in b], ids, shots), strict=True))
            return [list(plans[i].demos) for i in ids]

        batches = ((b, demonstrations(b)) for b in chunks)
        lookup: CacheLookup = store.cache_get_many if use_cache else (lambda keys: {})
        # A backend that spreads batches over workers (stillhouse.scale) answers them itself,
        # in order; either way only this process writes the store, one batch per transaction.
        spread = getattr(backend, "answer_batches", None)
        if spread is not None and shortlister is not None:
            raise fail(Errors.E565)
        answered = (
            spread(task, method, prior, batches, lookup)
            if spread is not None
            else answer_batches(
                backend, task, method, prior, batches, lookup, plans if shortlister else None
            )
        )
        done = 0
        for batch, (prepared, cached, computed) in zip(chunks, answered, strict=True):
            annotations, fresh = [], []
            for position, (example, key, cut) in enumerate(
                zip(batch, prepared.keys, prepared.cut_flags, strict=True)
            ):
                if key in cached:
                    hits += 1
                    value = cached[key]
                    result = LLMAnswer(
                        None
                        if value["answer"] is None
                        else answer_from_json(value["answer"], task.kind),
                        value["probs"],
                        value["info"],
                    )
                else:
                    result = computed[position]
                    if result.info.get("privacy_blocked"):
                        # not sent, so no answer: a person looks at it instead
                        blocked.append(_blocked_item(example.id, result.info["pii"]))
                        continue
                    fresh.append(
                        (
                            key,
                            {
                                "answer": None
                                if result.answer is None
                                else answer_to_json(result.answer, task.kind),
                                "probs": result.probs,
                                "info": result.info,
                            },
                        )
                    )
                info = dict(result.info)
                if cut is not None:
                    truncated += 1
                    info["truncated"] = {
                        "kept_tokens": task.llm.max_text_tokens,
                        "original_tokens": cut,
                    }
                if result.answer is None:
                    info["invalid"] = True
                if example.id in guards:
                    info["guard"] = guards[example.id]
                annotations.append(
                    Annotation(
                        example.id,
                        annotator,
                        result.answer if result.answer is not None else "",
                        result.probs,
                        info,
                        time.time(),
                    )
                )
            store.add_annotations(annotations, task.kind, run_id=run_id, cache=fresh)
            if blocked:
                store.add_to_review_queue(PRIVACY_QUEUE, blocked)
                blocked_count += len(blocked)
                blocked = []
            done += len(batch)
            if progress:
                progress(done, len(todo))
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        try:
            summary = _summarise(
                task,
                store,
                targets,
                annotator,
                method,
                model_spec,
                run_id,
                len(todo) - blocked_count,
                len(targets) - len(todo) - len(queued),
                hits,
                time.perf_counter() - started,
                truncated,
                skipped,
                backend,
            )
            privacy = getattr(backend, "privacy", None)
            if privacy is not None:
                summary = replace(summary, privacy=privacy.record(), privacy_blocked=blocked_count)
            if guard is not None:
                summary = replace(
                    summary,
                    guard={
                        "injection": guard.injection,
                        "detector": guard.detector,
                        "threshold": threshold_of(guard),
                    },
                    injection_flagged=sum(bool(g["injection"]) for g in guards.values()),
                    injection_queued=len(queued),
                )
            store.finish_run(
                run_id, status, {k: v for k, v in summary.__dict__.items() if k != "skipped_rows"}
            )
        except Exception:
            if status == "finished":
                raise
            # The store may be what failed: the error that ended the run is the one to show.
    return summary


def _summarise(
    task: Task,
    store: Store,
    examples: Sequence[Example],
    annotator: str,
    method: str,
    model_spec: str,
    run_id: str,
    annotated: int,
    resumed: int,
    hits: int,
    seconds: float,
    truncated: int,
    skipped: list[str],
    backend: Backend,
) -> AnnotateSummary:
    ids = {e.id for e in examples}
    mine = {a.example_id: a for a in store.annotations(task.kind, annotator) if a.example_id in ids}
    counts: Counter[str] = Counter()
    invalid = dropped = correct = n_gold = 0
    confidences = []
    for example in examples:
        annotation = mine.get(example.id)
        if annotation is None:
            continue
        if annotation.info.get("invalid"):
            invalid += 1
        dropped += int(annotation.info.get("dropped_spans", 0))
        if task.kind == "classify" and not annotation.info.get("invalid"):
            counts[str(annotation.answer)] += 1
        elif task.kind == "multilabel":
            counts.update(annotation.answer)  # type: ignore[arg-type]
        else:
            counts.update(s.label for s in annotation.answer)  # type: ignore[union-attr]
        if annotation.probs and task.kind == "classify":
            confidences.append(max(annotation.probs.values()))
        if example.gold is not None:
            n_gold += 1
            correct += _matches(annotation.answer, example.gold, task.kind)
    accuracy = correct / n_gold if n_gold else None
    return AnnotateSummary(
        run_id=run_id,
        annotator=annotator,
        model=model_spec,
        method=method,
        examples=len(examples),
        annotated=annotated,
        resumed=resumed,
        cache_hits=hits,
        seconds=seconds,
        truncated=truncated,
        invalid=invalid,
        dropped_spans=dropped,
        probabilities=bool(confidences) or (task.kind == "multilabel" and backend.can_score),
        n_gold=n_gold,
        accuracy=accuracy,
        accuracy_interval=wilson_interval(correct, n_gold) if n_gold else None,
        label_counts=dict(counts.most_common()),
        mean_confidence=float(np.mean(confidences)) if confidences else None,
        skipped_rows=skipped,
        store=str(store.path),
    )


def _matches(answer: Any, gold: Any, kind: str) -> bool:
    """Exact match: same label, same label set, or the same spans (offsets and labels)."""
    if kind == "classify":
        return bool(answer == gold)
    if kind == "multilabel":
        return set(answer) == set(gold)
    return {(s.start, s.end, s.label) for s in answer} == {(s.start, s.end, s.label) for s in gold}


def _blocked_item(example_id: str, counts: dict[str, int]) -> ReviewItem:
    """The review-queue entry of a text ``[privacy] remote = "block"`` kept from the server:
    the reason and the entity types found (never their values)."""
    found = ", ".join(f"{entity} {count}" for entity, count in sorted(counts.items()))
    return ReviewItem(example_id, 0, 1.0, [f"{BLOCKED_REASON}: {found}"])


def _screen(
    todo: Sequence[Example], guard: GuardSection
) -> tuple[dict[str, dict[str, Any]], list[ReviewItem]]:
    """Screen ``todo``'s texts in chunks: each example's ``info["guard"]``, and the review-queue
    entries of those kept from the LLM (reason and priority: the detector's score, the most
    suspicious first)."""
    guards: dict[str, dict[str, Any]] = {}
    queued: list[ReviewItem] = []
    for start in range(0, len(todo), _SCREEN_CHUNK):
        chunk = todo[start : start + _SCREEN_CHUNK]
        for example, screening in zip(
            chunk, screen_texts([e.text for e in chunk], guard), strict=True
        ):
            guards[example.id] = guard_info(screening, guard)
            if keeps_from_llm(screening, guard):
                score = float(screening.score or 0.0)
                reason = f"{INJECTION_REASON}: score {score:.3f}"
                queued.append(ReviewItem(example.id, 0, score, [reason]))
    return guards, queued
