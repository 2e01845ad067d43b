"""The Task: what is being labelled and how, loaded and validated from ``task.toml``.

Any mistake in the file becomes one :class:`~stillhouse.errors.StillhouseError` that names the
file, the key and what was expected; pydantic's own report is never shown.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from stillhouse.data.records import Kind
from stillhouse.errors import Errors, fail, from_os_error
from stillhouse.output_guard import Output, check_outputs
from stillhouse.paths import require_file

STORE_FILE_NAME = "stillhouse.db"
_UTF16_LE_BOM, _UTF16_BE_BOM = b"\xff\xfe", b"\xfe\xff"

# Rules the gate understands (see `stillhouse gate`); any other key in [gate] is a mistake.
GATE_RULES = (
    "min_accuracy",
    "min_macro_f1",
    "min_coverage_at_precision",
    "max_ece",
    "max_p95_latency_ms",
    "max_flip_rate",
    "min_worst_slice_accuracy",
    "no_significant_regression",
    "max_attack_success_rate",
    "max_guard_false_positive_rate",
    # read from monitor.json (`stillhouse monitor`), not results.json
    "max_label_psi",
    "max_abstention_rate",
    "min_estimated_accuracy",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputFields(_Strict):
    """Which fields of a data row hold the text, the gold answer, the id and extra metadata."""

    text: str = "text"
    label: str = "label"
    id: str = "id"
    meta: tuple[str, ...] = ()

    @field_validator("text", "label", "id")
    @classmethod
    def _named(cls, name: str, info: ValidationInfo) -> str:
        # An empty name would match no field, and every row would be blamed for it instead.
        if not name.strip():
            key = str(info.field_name)
            role = {"text": "the text", "label": "the gold answer", "id": "the example id"}[key]
            raise ValueError(
                f"the field name is {_emptiness(name)}; write the name of the data field that holds "
                f"{role}, or leave the key out to use `{key}`"
            )
        return name

    @field_validator("meta")
    @classmethod
    def _meta_named(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for number, name in enumerate(names, start=1):
            if not name.strip():
                raise ValueError(
                    f"entry {number} is {_emptiness(name)}; list the names of the data fields "
                    "to keep as metadata"
                )
        return names


def _emptiness(name: str) -> str:
    return "empty" if not name else "only spaces"


class ShotSpan(_Strict):
    text: str = Field(min_length=1)
    label: str


class Shot(_Strict):
    """A fixed few-shot example: a text and its answer (label, labels or spans by task kind)."""

    text: str = Field(min_length=1)
    label: str | None = None
    labels: tuple[str, ...] | None = None
    spans: tuple[ShotSpan, ...] | None = None


class LLMSettings(_Strict):
    """How the LLM annotates: model, runtime and prompt options (all overridable from the CLI)."""

    model: str = "qwen2.5-0.5b"
    n_ctx: int = Field(default=4096, ge=256)
    threads: int | None = Field(default=None, ge=1)
    seed: int = 0
    contextual_calibration: bool = False
    shots: int = Field(default=0, ge=0)
    max_text_tokens: int = Field(default=512, ge=8)
    batch_size: int = Field(default=16, ge=1)
    max_new_tokens: int = Field(default=256, ge=1)
    concurrency: int = Field(default=4, ge=1)
    timeout_s: float = Field(default=120.0, gt=0)
    api_key_env: str = "OPENAI_API_KEY"
    score_tolerance: float = Field(default=0.05, ge=0.0, lt=1.0)
    # Label shortlists (llm/shortlist.py): score only the retriever's top K labels per text.
    # Unset: 10 for a classify task with more than 20 labels, else off; 0: off.
    shortlist: int | None = Field(default=None, ge=0)
    # The chance the gold label is in a shortlist, assumed when there is no labelled seed to
    # measure it on by leave-one-out.
    shortlist_coverage: float = Field(default=0.9, gt=0.0, le=1.0)
    # With --shots: demonstrations first cover this many top shortlisted labels (one nearest
    # seed text each), then the nearest seed texts fill the rest; 0 (default: it measured far
    # better with the 0.5B model, bench/RESULTS.md): the nearest only.
    shortlist_cover: int = Field(default=0, ge=0)
    # spotlighting (Hines et al. 2024) of the data in the prompt: see stillhouse.llm.spotlight
    spotlight: Literal["off", "delimit", "datamark"] = "off"


class PrivacySection(_Strict):
    """What happens to personal data in texts sent to an OpenAI-compatible server (see
    :mod:`stillhouse.guard.privacy`): ``remote`` is ``pseudonymize`` (placeholders, restored in
    span answers), ``redact`` (type markers, no way back), ``block`` (the text is not sent; it
    goes to the review queue ``privacy``) or ``allow``. Unset: ``pseudonymize`` for a server
    that is not on this machine, ``allow`` for a loopback one. ``entities`` are the Presidio
    types looked for (unset: the identifying ones); ``score_threshold`` the lowest score kept."""

    remote: Literal["pseudonymize", "redact", "block", "allow"] | None = None
    entities: tuple[str, ...] | None = None
    score_threshold: float = Field(default=0.5, ge=0.0, le=1.0)

    @field_validator("entities")
    @classmethod
    def _known_entities(cls, entities: tuple[str, ...] | None) -> tuple[str, ...] | None:
        from stillhouse.guard.pii_recognizers import KNOWN_ENTITIES

        if entities is None:
            return None
        if not entities:
            raise ValueError("give at least one entity type, or leave the key out")
        unknown = [name for name in entities if name not in KNOWN_ENTITIES]
        if unknown:
            raise ValueError(
                f"unknown entity type {unknown[0]!r}; known: {', '.join(KNOWN_ENTITIES)}"
            )
        return entities


class GuardSection(_Strict):
    """What happens to a text the prompt-injection detector flags before an LLM sees it (see
    :mod:`stillhouse.guard.screen`): ``injection`` is ``route`` (it never reaches an LLM: a
    cascade's small model reads it without its flagged windows and answers it if sure, else it
    goes to review), ``block`` (refused: review
    at once), ``flag`` (the LLM still answers; the flag is recorded) or ``off`` (no scan).
    ``detector``: which shipped detector scores the texts (``linear``, n-grams, the fast default;
    ``encoder-ngrams``, n-grams beside a sentence encoder, catches more for a few ms a text).
    ``threshold``: the detector score at or above which a text is flagged (unset: the
    detector's own)."""

    injection: Literal["route", "block", "flag", "off"] = "route"
    detector: Literal["linear", "encoder-ngrams"] = "linear"
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)


class ServeSection(_Strict):
    """How `stillhouse serve` serves the task: the systems (NAME = "SOURCE:VALUE" as --system
    takes them, the first the default; paths relative to task.toml's folder), batching, request
    limits and the prediction log (the command line overrides batching and logging)."""

    systems: dict[str, str] = Field(default_factory=dict)
    max_batch: int = Field(default=64, ge=1, le=4096)
    max_wait_ms: float = Field(default=2.0, ge=0, le=1000)
    max_texts: int = Field(default=256, ge=1)
    max_text_chars: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    timeout_s: float = Field(default=30.0, gt=0)
    top_k: int = Field(default=5, ge=1)
    log_predictions: str = "all"
    log_texts: bool = False
    cors_origins: tuple[str, ...] = ()

    @field_validator("systems")
    @classmethod
    def _specs(cls, systems: dict[str, str]) -> dict[str, str]:
        for name, spec in systems.items():
            if not name.strip() or "=" in name:
                raise ValueError(f"system name {name!r} is empty or holds `=`")
            source, colon, value = spec.partition(":")
            if not (source and colon and value.strip()):
                raise ValueError(
                    f"system {name!r}: {spec!r} is not SOURCE:VALUE (model:DIR, llm:MODEL or "
                    "cascade:STAGE@T,...,STAGE)"
                )
        return systems


class TrackingSection(_Strict):
    """Where runs are logged in MLflow (see :mod:`stillhouse.tracking`; ``--track`` overrides
    ``uri``): ``uri`` a tracking URI (``sqlite:///mlflow.db``: a relative path is next to
    task.toml), ``experiment`` the experiment's name (unset: the task's name), ``register`` the
    registry name `stillhouse train` registers its model under (unset: not registered)."""

    uri: str | None = None
    experiment: str | None = None
    # `register` in the file; another name here, as pydantic models have a `register` method
    model_name: str | None = Field(default=None, alias="register")

    @field_validator("uri", "experiment", "model_name")
    @classmethod
    def _not_blank(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(
                f"it is {_emptiness(value)}; give a value, or leave the key out"
                + (" (tracking is then off)" if info.field_name == "uri" else "")
            )
        return value


class Task(_Strict):
    name: str = Field(min_length=1)
    kind: Literal["classify", "multilabel", "spans"] = "classify"
    instructions: str = ""
    labels: dict[str, str] = Field(min_length=1)
    examples: tuple[Shot, ...] = ()
    input: InputFields = InputFields()
    languages: tuple[str, ...] = ("en",)
    llm: LLMSettings = LLMSettings()
    gate: dict[str, Any] = Field(default_factory=dict)
    serve: ServeSection = ServeSection()
    privacy: PrivacySection = PrivacySection()
    # where runs are logged changes no result: not part of the fingerprint
    tracking: TrackingSection = Field(default=TrackingSection(), exclude=True)
    guard: GuardSection = GuardSection()
    # Where the task was loaded from; the store lives next to it.
    path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _check_labels_and_examples(self) -> Task:
        unknown = [key for key in self.gate if key not in GATE_RULES]
        if unknown:
            raise ValueError(
                f"key `gate.{unknown[0]}`: unknown gate rule (keys after a [gate] header belong "
                f"to it); known rules: {', '.join(GATE_RULES)}"
            )
        if self.kind == "classify" and len(self.labels) < 2:
            raise ValueError("labels: a `classify` task needs at least 2 labels")
        for name in self.labels:
            if not name.strip() or name != name.strip():
                raise ValueError(f"labels: label name {name!r} is empty or has surrounding spaces")
        for i, shot in enumerate(self.examples):
            given = [k for k in ("label", "labels", "spans") if getattr(shot, k) is not None]
            expected = {"classify": "label", "multilabel": "labels", "spans": "spans"}[self.kind]
            if given != [expected]:
                raise ValueError(
                    f"examples[{i}]: a `{self.kind}` task's example needs `{expected}` "
                    f"(and nothing else of label/labels/spans); it has {given or 'none'}"
                )
            names = (
                [shot.label]
                if shot.label is not None
                else list(shot.labels or ()) + [s.label for s in shot.spans or ()]
            )
            for name in names:
                if name not in self.labels:
                    raise ValueError(
                        f"examples[{i}]: label {name!r} is not one of the task's labels"
                    )
        return self

    @property
    def label_names(self) -> list[str]:
        return list(self.labels)

    @property
    def task_kind(self) -> Kind:
        return self.kind

    @property
    def directory(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    @property
    def store_path(self) -> Path:
        return self.directory / STORE_FILE_NAME

    def fingerprint(self) -> str:
        """sha256 of the task's content (not its location): recorded with every run."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return (
            f"key `{key}`: unknown key (check the spelling; see `stillhouse init` for the template)"
        )
    if key == "labels" and kind == "too_short":
        return 'key `labels`: add at least one label as `name = "description"` under [labels]'
    if kind == "missing":
        return f"key `{key}`: required but missing"
    if kind == "value_error":  # our checks: a field's is prefixed with its key; Task's name theirs
        detail = message.removeprefix("Value error, ")
        return f"key `{key}`: {detail}" if error["loc"] else detail
    got = error.get("input")
    shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
    return f"key `{key}`: {message.lower()} (got {shown})"


def parse_task(data: dict[str, Any], path: Path) -> Task:
    """Validate a parsed task.toml table; raise one readable error listing every problem."""
    try:
        return Task.model_validate({**data, "path": path})
    except ValidationError as error:
        problems = "; ".join(_describe(e) for e in error.errors(include_url=False))
        raise fail(Errors.E003, path=path, problems=problems) from None


def load_task(path: str | Path) -> Task:
    """Read and validate ``task.toml`` (or the task.toml inside a directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "task.toml"
    raw = require_file(path, Errors.E001, Errors.E006).read_bytes()
    if raw.startswith((_UTF16_LE_BOM, _UTF16_BE_BOM)):
        detail = "the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8"
        raise fail(Errors.E002, path=path, detail=detail)
    try:
        # utf-8-sig: a UTF-8 byte-order mark (Windows editors write one) is not part of the TOML.
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except tomllib.TOMLDecodeError as error:
        raise fail(Errors.E002, path=path, detail=str(error)) from None
    except UnicodeDecodeError as error:
        raise fail(Errors.E002, path=path, detail=f"not UTF-8 ({error.reason})") from None
    if "path" in data:
        raise fail(Errors.E004, path=path, key="path", detail="unknown key")
    return parse_task(data, path.resolve())


def init_task(directory: str | Path) -> Path:
    """Write a commented template ``task.toml`` into ``directory`` (created if needed)."""
    from importlib.resources import files

    directory = Path(directory)
    target = directory / "task.toml"
    if target.exists():
        raise fail(Errors.E005, path=directory)
    check_outputs([Output("DIRECTORY", target)], [])
    template = files("stillhouse").joinpath("templates/task.toml").read_text(encoding="utf-8")
    text = template.replace("{name}", directory.resolve().name)
    created = False
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with target.open("x", encoding="utf-8") as out:  # never over a task.toml made meanwhile
            created = True
            out.write(text)
    except OSError as error:
        if created:
            target.unlink(missing_ok=True)  # cut short (no space): no half-written task file
        raise from_os_error(error, target) from None
    return target
