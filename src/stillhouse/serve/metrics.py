"""Prometheus metrics of one app, on a registry of its own (never prometheus-client's global one).

Series (the label sets are small and fixed: endpoints, the served systems, their stages, HTTP
status codes):

- ``stillhouse_requests_total{endpoint, system, status}`` — every request answered;
- ``stillhouse_request_latency_seconds{system}`` — /v1/predict, arrival to answer (histogram);
- ``stillhouse_batch_size{system}`` — texts per model call (histogram);
- ``stillhouse_requests_in_flight`` — requests being answered now;
- ``stillhouse_texts_answered_total{system, stage}``, ``stillhouse_texts_abstained_total{system}``,
  ``stillhouse_texts_llm_total{system}`` (texts that reached an LLM stage of a cascade);
- ``stillhouse_stage_share{system, stage}``, ``stillhouse_abstention_rate{system}``,
  ``stillhouse_llm_fallback_rate{system}`` — shares of all texts so far, derived at scrape time;
- ``stillhouse_confidence{system}`` — the answering stage's top probability (histogram);
- ``stillhouse_guard_flagged_total{system, action}`` — texts the prompt-injection detector
  flagged ([guard]), by what was done (route, block, flag);
- ``stillhouse_reloads_total{outcome}``; ``stillhouse_prediction_log{state}`` (one worker).

With several worker processes, prometheus-client's multiprocess mode is used (the supervisor
sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start): every worker writes its values to
files there and /metrics, whichever worker answers it, adds up all workers (in-flight: the live
ones).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
ENDPOINTS = (
    "/v1/predict",
    "/v1/systems",
    "/v1/admin/reload",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
)
_ANSWERED = "stillhouse_texts_answered"
_ABSTAINED = "stillhouse_texts_abstained"
_LLM = "stillhouse_texts_llm"


def multiprocess_directory() -> str | None:
    """The folder of multiprocess mode, when the supervisor set one."""
    return os.environ.get(MULTIPROCESS_VARIABLE) or None


class ServeMetrics:
    """The metric objects of one app and :meth:`render` for /metrics; ``log_stats`` gives the
    prediction log's counts."""

    def __init__(
        self,
        systems: Sequence[str],
        *,
        log_stats: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.multiprocess = multiprocess_directory()
        self.registry = CollectorRegistry(auto_describe=True)
        # in multiprocess mode the values live in files, gathered at scrape time
        registry = None if self.multiprocess else self.registry
        self.requests = Counter(
            "stillhouse_requests",
            "Requests answered, by endpoint, system and HTTP status.",
            ["endpoint", "system", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "stillhouse_request_latency_seconds",
            "Time from a /v1/predict request's arrival to its answer.",
            ["system"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "stillhouse_batch_size",
            "Texts per model call (micro-batches of concurrent requests).",
            ["system"],
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "stillhouse_requests_in_flight",
            "Requests being answered now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.answered = Counter(
            _ANSWERED,
            "Texts answered, by system and the cascade stage that answered (`model` for a "
            "single model).",
            ["system", "stage"],
            registry=registry,
        )
        self.abstained = Counter(
            _ABSTAINED,
            "Texts a cascade abstained on (sent to the review queue).",
            ["system"],
            registry=registry,
        )
        self.llm = Counter(
            _LLM,
            "Texts that reached an LLM stage of a cascade (the LLM fallback).",
            ["system"],
            registry=registry,
        )
        self.confidence = Histogram(
            "stillhouse_confidence",
            "Top probability of the answering (or abstaining) stage, per text.",
            ["system"],
            buckets=CONFIDENCE_BUCKETS,
            registry=registry,
        )
        self.guard_flagged = Counter(
            "stillhouse_guard_flagged",
            "Texts the prompt-injection detector flagged before an LLM saw them, by system and "
            "action ([guard] injection: route, block or flag).",
            ["system", "action"],
            registry=registry,
        )
        self.reloads = Counter(
            "stillhouse_reloads",
            "Reloads of the model folders, by outcome (ok / failed).",
            ["outcome"],
            registry=registry,
        )
        self._systems = list(systems)
        self._log_stats = log_stats
        self._own = [self.answered, self.abstained, self.llm]
        if not self.multiprocess:
            self.registry.register(_Derived(lambda: self._collect_own(), self._log_stats))

    def _collect_own(self) -> Iterable[Metric]:
        for metric in self._own:
            yield from metric.collect()

    def render(self) -> bytes:
        """The Prometheus text exposition of every series (all workers in multiprocess mode)."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        collector = multiprocess.MultiProcessCollector(registry, path=self.multiprocess)
        registry.register(_Derived(collector.collect, None))
        return generate_latest(registry)

    def close(self) -> None:
        """Mark this worker gone (multiprocess mode: its live gauges stop counting)."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), self.multiprocess)


class _Derived:
    """Shares of all texts so far, computed from the counters at scrape time, and the prediction
    log's counts."""

    def __init__(
        self,
        source: Callable[[], Iterable[Metric]],
        log_stats: Callable[[], dict[str, int]] | None,
    ) -> None:
        self._source = source
        self._log_stats = log_stats

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        answered: dict[str, dict[str, float]] = defaultdict(dict)
        abstained: dict[str, float] = defaultdict(float)
        llm: dict[str, float] = defaultdict(float)
        for family in self._source():
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                system = sample.labels.get("system", "")
                if family.name == _ANSWERED:
                    stage = sample.labels.get("stage", "")
                    answered[system][stage] = answered[system].get(stage, 0.0) + sample.value
                elif family.name == _ABSTAINED:
                    abstained[system] += sample.value
                elif family.name == _LLM:
                    llm[system] += sample.value
        share = GaugeMetricFamily(
            "stillhouse_stage_share",
            "Share of all texts so far answered by each stage (a single model: `model`).",
            labels=["system", "stage"],
        )
        abstention = GaugeMetricFamily(
            "stillhouse_abstention_rate",
            "Share of all texts so far that were abstained on.",
            labels=["system"],
        )
        fallback = GaugeMetricFamily(
            "stillhouse_llm_fallback_rate",
            "Share of all texts so far that reached an LLM stage.",
            labels=["system"],
        )
        for system in sorted(set(answered) | set(abstained)):
            total = sum(answered[system].values()) + abstained[system]
            if not total:
                continue
            for stage, count in sorted(answered[system].items()):
                share.add_metric([system, stage], count / total)
            abstention.add_metric([system], abstained[system] / total)
            fallback.add_metric([system], llm[system] / total)
        yield share
        yield abstention
        yield fallback
        if self._log_stats is not None:
            log = GaugeMetricFamily(
                "stillhouse_prediction_log",
                "The prediction log's counts in this process (queued, written, sampled_out, "
                "failed, ...).",
                labels=["state"],
            )
            for state, count in sorted(self._log_stats().items()):
                log.add_metric([state], count)
            yield log
