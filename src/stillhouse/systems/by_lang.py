"""``NAME=by-lang:LANG=TARGET,...,*=TARGET``: one system that sends each text to the model
trained for its language.

A TARGET is a model folder (``models/jv``) or any cascade-stage source (``model:DIR``,
``llm:MODEL``). The language of a text is its ``lang`` meta field when the caller has one
(evaluate passes the test set's ``[input] meta``; see :data:`META_FIELD`), else what lingua
detects among the routes' languages and the audit's candidates
(:mod:`stillhouse.audit.language`), the way the audit detects them. A language with no route
of its own, and ``unknown``, go to the ``*`` route, which every spec needs. Languages lingua
cannot detect (Javanese, Sundanese, the other NusaX languages but Indonesian and English) can be
routed only through the meta field: without it their texts land on the closest language lingua
knows (often Indonesian or Malay) or ``*``.

Every prediction's ``info`` holds ``lang`` (the language routed on), ``lang_from`` (``meta`` or
``lingua``) and ``route`` (the route's language, ``*`` for the fallback), next to the answering
model's own ``info`` (a cascade route's ``abstained`` and ``stage`` count as the system's); evaluate reports accuracy per routed language as the slice
:data:`ROUTE_SLICE` of such a system.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from stillhouse import registry
from stillhouse.data.records import Example, Prediction
from stillhouse.errors import Errors, fail
from stillhouse.output_guard import Input
from stillhouse.predictors import Predictor
from stillhouse.task import Task

FALLBACK = "*"
META_FIELD = "lang"
ROUTE_SLICE = "lang (routed)"
EXAMPLE = "multi=by-lang:en=models/en,jv=models/jv,*=models/all"
_CODE = re.compile(r"[a-z]{2,3}")


@dataclass(frozen=True)
class RouteSpec:
    """One route as written: the language (ISO 639-1/-3 code, or ``*``), the stage source and
    its value (``model`` and the folder for a bare path)."""

    lang: str
    source: str
    value: str


def parse_routes(spec: str, value: str) -> list[RouteSpec]:
    """The routes of ``value`` (what follows ``by-lang:``); E750 names the route that is wrong
    and why, E751 a spec without the ``*`` route."""
    routes: list[RouteSpec] = []
    for number, part in enumerate(value.split(","), start=1):

        def wrong(detail: str, part: str = part, number: int = number) -> Exception:
            return fail(Errors.E750, spec=spec, number=number, part=part, detail=detail)

        lang, equals, target = (piece.strip() for piece in part.partition("="))
        if not equals or not lang or not target:
            raise wrong("a route is LANG=TARGET, e.g. jv=models/jv or *=models/all")
        if lang != FALLBACK and not _CODE.fullmatch(lang):
            raise wrong(
                f"`{lang}` is not a language code (2–3 lower-case letters, e.g. en, jv) or *"
            )
        if any(route.lang == lang for route in routes):
            raise wrong(f"language `{lang}` already has a route")
        source, colon, rest = target.partition(":")
        stage_source = registry.system_sources.get(source) if colon else None
        if stage_source is None or not getattr(stage_source, "stage", False):
            source, rest = "model", target  # a bare folder path
        if not rest.strip():
            raise wrong("the route names no target after its source")
        routes.append(RouteSpec(lang, source, rest.strip()))
    if not any(route.lang == FALLBACK for route in routes):
        raise fail(Errors.E751, spec=spec)
    return routes


class RoutedSystem:
    """Routes (language → Predictor, ``*`` among them) as one Predictor; see the module
    docstring. ``detect(texts)`` gives a language code per text (lingua by default)."""

    reads_meta = True

    def __init__(
        self,
        routes: Mapping[str, Predictor],
        *,
        name: str = "by-lang",
        route_names: Mapping[str, str] | None = None,
    ) -> None:
        if FALLBACK not in routes:
            raise ValueError("a routed system needs a `*` route")
        self.routes = dict(routes)
        self.name = name
        self.route_names = dict(route_names or {lang: lang for lang in routes})
        self.counts = dict.fromkeys(self.routes, 0)
        self._detector: Any = None

    def predict(
        self, texts: Sequence[str], metas: Sequence[Mapping[str, Any]] | None = None
    ) -> list[Prediction]:
        """One prediction per text, in order; each route predicts its texts as one batch.
        ``metas`` (one mapping per text) may carry the language as :data:`META_FIELD`."""
        started = time.perf_counter()
        given = [_meta_lang(meta) for meta in metas] if metas is not None else [None] * len(texts)
        unknown = [i for i, lang in enumerate(given) if lang is None]
        detected = dict(zip(unknown, self.detect([texts[i] for i in unknown]), strict=True))
        langs = [lang if lang is not None else detected[i] for i, lang in enumerate(given)]
        detect_ms = (time.perf_counter() - started) * 1000 / max(len(texts), 1)
        batches: dict[str, list[int]] = {}
        for position, lang in enumerate(langs):
            batches.setdefault(lang if lang in self.routes else FALLBACK, []).append(position)
        results: list[Prediction | None] = [None] * len(texts)
        for route, positions in batches.items():
            predictions = self.routes[route].predict([texts[i] for i in positions])
            if len(predictions) != len(positions):
                raise fail(
                    Errors.E513,
                    name=f"{self.name} route {route}",
                    got=len(predictions),
                    expected=len(positions),
                )
            self.counts[route] += len(positions)
            for position, prediction in zip(positions, predictions, strict=True):
                results[position] = replace(
                    prediction,
                    latency_ms=prediction.latency_ms + detect_ms,
                    # the answering model's own info stays on top (a cascade route's
                    # `abstained`, `stage`, `confidence` and `guard` are what serve and
                    # evaluate read), with the routing added
                    info={
                        **prediction.info,
                        "lang": langs[position],
                        "lang_from": "meta" if given[position] is not None else "lingua",
                        "route": route,
                    },
                )
        return results  # type: ignore[return-value]

    def detect(self, texts: Sequence[str]) -> list[str]:
        """lingua's ISO 639-1 code per text among the routes' languages and the audit's
        candidates, ``unknown`` where it gives none (the detector is built once)."""
        if not texts:
            return []
        if self._detector is None:
            from lingua import LanguageDetectorBuilder

            from stillhouse.audit.language import detector_languages

            languages, _ = detector_languages([lang for lang in self.routes if lang != FALLBACK])
            self._detector = LanguageDetectorBuilder.from_languages(*languages).build()
        found = self._detector.detect_languages_in_parallel_of(list(texts))
        return ["unknown" if lang is None else lang.iso_code_639_1.name.lower() for lang in found]

    def describe(self) -> dict[str, Any]:
        """The routes (each with its ``describe()``), the texts each got so far, and an identity
        hash over the routes' model hashes when every route has one."""
        descriptions = {lang: predictor.describe() for lang, predictor in self.routes.items()}
        description: dict[str, Any] = {
            "type": "by-lang",
            "routes": [
                {"lang": lang, "target": self.route_names[lang], "description": described}
                for lang, described in descriptions.items()
            ],
            "texts_routed": dict(self.counts),
        }
        hashes = [d.get("sha256") or d.get("model_sha256") for d in descriptions.values()]
        if all(isinstance(h, str) for h in hashes):
            identity = [[lang, h] for lang, h in zip(descriptions, hashes, strict=True)]
            description["sha256"] = hashlib.sha256(json.dumps(identity).encode()).hexdigest()
        sizes = [d.get("size_bytes") for d in descriptions.values()]
        if all(isinstance(s, int) and not isinstance(s, bool) for s in sizes):
            description["size_bytes"] = sum(sizes)  # type: ignore[arg-type]
        return description

    def close(self) -> None:
        for predictor in self.routes.values():
            close = getattr(predictor, "close", None)
            if callable(close):
                close()


def _meta_lang(meta: Mapping[str, Any]) -> str | None:
    value = meta.get(META_FIELD)
    return value.strip().lower() if isinstance(value, str) and value.strip() else None


def routed_examples(
    examples: Sequence[Example], predictions: Sequence[Prediction]
) -> list[Example]:
    """``examples`` with the language each was routed on as the meta field :data:`ROUTE_SLICE`
    (so evaluate slices by it like by any meta field)."""
    return [
        replace(example, meta={**example.meta, ROUTE_SLICE: prediction.info.get("lang")})
        for example, prediction in zip(examples, predictions, strict=True)
    ]


class ByLangSource:
    """A routed system whose routes are opened by their own stage sources; it is not a stage
    itself (a cascade may not route, routes may not nest)."""

    order = 45
    stage = False

    def check(self, spec: str, value: str, task: Task) -> None:
        """E750/E751 for a malformed spec, E752 unless ``task`` is a classification task."""
        parse_routes(spec, value)
        if task.kind != "classify":
            raise fail(Errors.E752, spec=spec, kind=task.kind)

    def open(self, name: str, value: str, task: Task) -> RoutedSystem:
        spec = f"{name}=by-lang:{value}"
        self.check(spec, value, task)
        routes: dict[str, Predictor] = {}
        names: dict[str, str] = {}
        for route in parse_routes(spec, value):
            source = registry.system_sources.get(route.source)
            routes[route.lang] = source.open(f"{route.source}:{route.value}", route.value, task)
            names[route.lang] = f"{route.source}:{route.value}"
        return RoutedSystem(routes, name=name, route_names=names)

    def inputs(self, spec: str, value: str) -> list[Input]:
        """What every route reads."""
        name = spec.partition("=")[0]
        found: list[Input] = []
        for route in parse_routes(spec, value):
            source = registry.system_sources.get(route.source)
            found += source.inputs(f"{name}={route.source}:{route.value}", route.value)
        return found


registry.system_sources.register("by-lang")(ByLangSource())
