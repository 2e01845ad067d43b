"""The table of bad input: one :class:`Case` per thing a user can type or leave lying around,
for every command, each with what must happen (exit code, the words the message must hold, the
files it may write). Placeholders in ``{}`` are the template's paths (see workspace.py).

Most cases run in this process; ``run="process"`` runs the real command in a subprocess,
``run="mounts"`` in a private mount namespace after ``prepare`` (read-only bind mounts, a full
tmpfs), and ``fault`` cases kill, interrupt or lock around the real command.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from workspace import (
    Outcome,
    Workspace,
    full_disk,
    read_only,
    run_process,
    running_annotate,
    runs_by_status,
    signal_mid_run,
    temporary_model_folder,
    with_store_locked,
)

Setup = Callable[[Workspace], None]
Check = Callable[[Workspace, Outcome], None]
Fault = Callable[[Workspace, list[str], dict[str, str]], Outcome]
# A fragment the message must hold, or a tuple of fragments of which one must be there.
Fragment = str | tuple[str, ...]


@dataclass(frozen=True)
class Case:
    """One bad input and what must happen.

    ``argv``: the command line (split like a shell, then placeholders expanded per word).
    ``exit``: the exit code (2 bad input, 1 a failing gate, 0 must succeed, 130 interrupted), or
    a tuple of acceptable ones (then ``says`` and ``code`` apply only to an exit 2).
    ``says``: fragments the output must contain (stderr for exit 2); ``code``: the error code
    (``"E120"`` or a tuple of acceptable ones); ``not_says``: fragments it must not contain.
    ``outputs``: what the command may create or change (placeholders; a folder covers what is
    below it); with exit 0 each must exist afterwards. ``store_writes``: the command may write
    the store (it must still pass ``PRAGMA integrity_check``). ``setup`` damages or creates files
    before the run (they are then inputs like any other). ``check``: further assertions.
    ``defect``: the defect of the issue "Nothing a user types can destroy data" it covers.
    """

    id: str
    argv: str
    exit: int | tuple[int, ...] = 2
    says: tuple[Fragment, ...] = ()
    code: str | tuple[str, ...] | None = None
    not_says: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    store_writes: bool = False
    setup: Setup | None = None
    check: Check | None = None
    run: str = "cli"
    prepare: str = ""
    fault: Fault | None = None
    env: dict[str, str] = field(default_factory=dict)
    defect: str = ""
    slow: bool = False

    @property
    def command(self) -> str:
        """The command the case is about: its id's first word (``app`` for the app itself)."""
        return self.id.split("-")[0]


# ------------------------------------------------------------------------------------------
# setups: small, composable file edits


def write(place: str, text: str) -> Setup:
    def setup(ws: Workspace) -> None:
        path = ws.path(place)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    return setup


def write_bytes(place: str, data: bytes) -> Setup:
    def setup(ws: Workspace) -> None:
        path = ws.path(place)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return setup


def rows(place: str, *records: Any) -> Setup:
    """A JSON-lines file of ``records`` (each dumped as is)."""
    return write(place, "".join(json.dumps(record) + "\n" for record in records))


def mkdir(place: str) -> Setup:
    return lambda ws: ws.path(place).mkdir(parents=True, exist_ok=True)


def remove(place: str) -> Setup:
    def setup(ws: Workspace) -> None:
        path = ws.path(place)
        if path.is_dir():
            import shutil

            shutil.rmtree(path)
        else:
            path.unlink()

    return setup


def edit(place: str, old: str, new: str, count: int = 1) -> Setup:
    def setup(ws: Workspace) -> None:
        path = ws.path(place)
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new, count), encoding="utf-8")

    return setup


def append(place: str, text: str) -> Setup:
    def setup(ws: Workspace) -> None:
        path = ws.path(place)
        path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")

    return setup


def prepend(place: str, text: str) -> Setup:
    def setup(ws: Workspace) -> None:
        path = ws.path(place)
        path.write_text(text + path.read_text(encoding="utf-8"), encoding="utf-8")

    return setup


def edit_json(place: str, change: Callable[[Any], Any]) -> Setup:
    """Load a JSON file, let ``change`` edit the document (or return a new one), write it back."""

    def setup(ws: Workspace) -> None:
        path = ws.path(place)
        document = json.loads(path.read_text(encoding="utf-8"))
        changed = change(document)
        path.write_text(json.dumps(document if changed is None else changed), encoding="utf-8")

    return setup


def symlink(place: str, target: str) -> Setup:
    return lambda ws: ws.path(place).symlink_to(ws.path(target))


def copy(source: str, place: str) -> Setup:
    def setup(ws: Workspace) -> None:
        ws.path(place).parent.mkdir(parents=True, exist_ok=True)
        ws.path(place).write_bytes(ws.path(source).read_bytes())

    return setup


def sql(statement: str) -> Setup:
    def setup(ws: Workspace) -> None:
        db = sqlite3.connect(ws["store"])
        try:
            db.execute(statement)
            db.commit()
        finally:
            db.close()

    return setup


def chain(*setups: Setup) -> Setup:
    def setup(ws: Workspace) -> None:
        for step in setups:
            step(ws)

    return setup


def many_texts(place: str, count: int) -> Setup:
    """A JSON-lines file of ``count`` short distinct texts (outputs big enough to fill a disk)."""
    return rows(
        place, *[{"id": f"t{i}", "text": f"Text number {i} is fine."} for i in range(count)]
    )


def first_train_row(ws: Workspace) -> dict[str, Any]:
    return json.loads(ws["data"].read_text(encoding="utf-8").splitlines()[0])


def changed_text_for_stored_id(ws: Workspace) -> None:
    """{root}/changed.jsonl: the first stored example's id with another text."""
    row = first_train_row(ws)
    row["text"] = row["text"] + " (edited later)"
    (ws.root / "changed.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")


def rename_label(ws: Workspace) -> None:
    """task.toml: the label `positive` renamed `pleased` (the store still holds `positive`)."""
    edit("{task}", "\npositive = ", "\npleased = ")(ws)


RENAMED = rename_label
SECOND_TASK = chain(
    copy("{task}", "{taskdir}/other.toml"),
    edit("{taskdir}/other.toml", 'name = "nusax-sentiment-en"', 'name = "another-task"'),
)
CARD = "{model}/card.json"


def swap_card_labels(card: dict[str, Any]) -> None:
    card["labels"] = list(reversed(card["labels"]))


def set_temperature(card: dict[str, Any]) -> None:
    card["calibration"]["temperature"] = 0.25


def truncate_weights(ws: Workspace) -> None:
    path = ws["model"] / "weights.safetensors"
    path.write_bytes(path.read_bytes()[:100])


# ------------------------------------------------------------------------------------------
# checks beyond the invariants


def no_run_left_running(ws: Workspace, outcome: Outcome) -> None:
    statuses = runs_by_status(ws["store"])
    assert "running" not in statuses, f"runs still marked running: {statuses}"
    assert statuses.get("interrupted", 0) >= 1, f"the killed run is not interrupted: {statuses}"


def predictions_written(count: int) -> Check:
    def check(ws: Workspace, outcome: Outcome) -> None:
        lines = (ws["out"] / "p.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == count, f"{len(lines)} predictions written, expected {count}"

    return check


# ------------------------------------------------------------------------------------------
# faults


def kill_train_then_rerun(ws: Workspace, argv: list[str], env: dict[str, str]) -> Outcome:
    """kill -9 train while its temporary model folder exists, then run it again."""
    killed = signal_mid_run(argv, env, ws.root, temporary_model_folder(ws["out"]), signal.SIGKILL)
    assert killed.code == -signal.SIGKILL, killed.text
    assert not ws["out"].exists(), "a killed train left --out behind"
    return run_process(argv, env, ws.root, timeout=120)


def interrupt_train(ws: Workspace, argv: list[str], env: dict[str, str]) -> Outcome:
    """Ctrl-C while train writes its model folder. A `linear` fit is short: on a loaded machine
    the run may finish before the signal lands (exit 0, --out written); then --out is removed
    and the run tried again, so that the case always tests an interrupted train."""
    missed = ""
    for _ in range(5):
        try:
            outcome = signal_mid_run(
                argv, env, ws.root, temporary_model_folder(ws["out"]), signal.SIGINT
            )
        except AssertionError as error:  # done before the folder was even seen
            outcome, missed = None, str(error)
        if outcome is not None and outcome.code != 0:
            return outcome
        shutil.rmtree(ws["out"], ignore_errors=True)
    raise AssertionError(f"train always finished before Ctrl-C landed: {missed}")


def _runs(ws: Workspace) -> int:
    db = sqlite3.connect(ws["store"])
    try:
        return int(db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
    finally:
        db.close()


def kill_annotate_then_rerun(ws: Workspace, argv: list[str], env: dict[str, str]) -> Outcome:
    """kill -9 annotate once it committed a batch, then run it again (it resumes)."""
    when = running_annotate(ws["store"], _runs(ws))
    killed = signal_mid_run(argv, env, ws.root, when, signal.SIGKILL)
    assert killed.code == -signal.SIGKILL, killed.text
    return run_process(argv, env, ws.root, timeout=180)


def interrupt_annotate(ws: Workspace, argv: list[str], env: dict[str, str]) -> Outcome:
    when = running_annotate(ws["store"], _runs(ws))
    return signal_mid_run(argv, env, ws.root, when, signal.SIGINT)


def store_locked(ws: Workspace, argv: list[str], env: dict[str, str]) -> Outcome:
    return with_store_locked(ws["store"], argv, env, ws.root)


LOCKED_ENV = {"STILLHOUSE_STORE_TIMEOUT": "2"}

# Mount set-ups (shell, placeholders expanded): the folder {root}/ro read-only, {root}/full a
# full tmpfs, and {root}/fullstore a full tmpfs holding a copy of the task and its store.
RO = "{root}/ro"
FULL = "{root}/full"
FULL_STORE = "{root}/fullstore"
MAKE_RO = mkdir(RO)
MAKE_FULL = mkdir(FULL)
MAKE_FULL_STORE = mkdir(FULL_STORE)
PREPARE_RO = read_only(RO)
PREPARE_FULL = full_disk(FULL)
PREPARE_FULL_STORE = full_disk(FULL_STORE, copy=("{task}", "{store}"))
FS_WRITE_CODES = ("E110", "E111", "E125")
FULL_CODES = ("E112", "E126")
# A folder or a file where the other is needed: the OS-error boundary or the output guard.
FOLDER_CODES = ("E113", "E122")
FILE_IN_PATH_CODES = ("E114", "E124")

# ------------------------------------------------------------------------------------------
# bad data files, each read by several commands

GOOD = {"id": "g1", "text": "The food was lovely.", "label": "positive"}
GOOD2 = {"id": "g2", "text": "Terrible service, never again.", "label": "negative"}
GOOD_LINE = json.dumps(GOOD) + "\n" + json.dumps(GOOD2) + "\n"
BAD = "{root}/bad"


@dataclass(frozen=True)
class BadData:
    name: str
    suffix: str
    content: bytes
    code: str
    says: tuple[Fragment, ...]
    labels: bool = False  # the problem is the label (predict ignores labels)
    empty_text: bool = False  # audit keeps rows with empty text for its text-health check


def _data(name: str, suffix: str, content: str | bytes, code: str, *says: Fragment, **kw: bool):
    raw = content.encode("utf-8") if isinstance(content, str) else content
    return BadData(name, suffix, raw, code, says, **kw)


BAD_DATA = [
    _data("invalid-json-line", ".jsonl", GOOD_LINE + '{"text": "x",\n', "E105", ":3", "JSON"),
    _data(
        "missing-text",
        ".jsonl",
        '{"id": "a", "body": "hello", "label": "positive"}\n',
        "E105",
        ":1",
        "`text`",
    ),
    _data("text-number", ".jsonl", '{"id": "a", "text": 42}\n', "E105", ":1", "must be a string"),
    _data(
        "text-whitespace",
        ".jsonl",
        GOOD_LINE + '{"id": "a", "text": "   "}\n',
        "E105",
        ":3",
        "whitespace",
        empty_text=True,
    ),
    _data(
        "duplicate-id",
        ".jsonl",
        GOOD_LINE + json.dumps({**GOOD, "text": "Another text."}) + "\n",
        "E105",
        ":3",
        "duplicate id 'g1'",
    ),
    _data(
        "unknown-label",
        ".jsonl",
        GOOD_LINE + '{"id": "a", "text": "Fine.", "label": "happy"}\n',
        "E105",
        ":3",
        "'happy'",
        labels=True,
    ),
    _data(
        "label-list",
        ".jsonl",
        '{"id": "a", "text": "Fine.", "label": ["positive"]}\n',
        "E105",
        ":1",
        "label",
        labels=True,
    ),
    _data(
        "bad-utf8", ".jsonl", GOOD_LINE.encode() + b'{"text": "caf\xe9"}\n', "E107", ":3", "UTF-8"
    ),
    _data("empty-file", ".jsonl", "", "E104", "no usable rows"),
    _data("blank-lines", ".jsonl", "\n  \n\n", "E104", "no usable rows"),
    _data("row-is-array", ".jsonl", '["a", "b"]\n', "E105", ":1", "object"),
    _data("id-object", ".jsonl", '{"id": {"a": 1}, "text": "x"}\n', "E105", ":1", "`id`"),
    _data("surrogate", ".jsonl", '{"id": "a", "text": "\\ud800"}\n', "E105", ":1", "surrogate"),
    _data("json-not-array", ".json", '{"text": "x"}', "E103", "array"),
    _data("json-invalid", ".json", '[{"text": "x"},', "E103", "JSON"),
    _data("csv-no-text-column", ".csv", "id,body\n1,hello\n", "E106", "`text`", "[input]"),
    _data("csv-ragged-row", ".csv", "id,text,label\n1,hi,positive\n2,hello\n", "E105", ":3"),
    _data("csv-header-only", ".csv", "id,text,label\n", "E104", "no usable rows"),
    _data("parquet-garbage", ".parquet", "this is not parquet\n", "E103", "Parquet"),
    _data("unsupported-suffix", ".txt", "hello world\n", "E102", ".txt"),
]
BAD_DATA_BY_NAME = {bad.name: bad for bad in BAD_DATA}


def bad_data_cases(
    command: str,
    argv: str,
    names: list[str],
    *,
    not_says: tuple[str, ...] = (),
    codes: dict[str, str] | None = None,
) -> list[Case]:
    """One case per bad data file in ``names``, ``argv`` reading it as ``{bad}`` (``codes``: the
    code a file gets from this command where it is not the file's usual one)."""
    cases = []
    for name in names:
        bad = BAD_DATA_BY_NAME[name]
        place = BAD + bad.suffix
        cases.append(
            Case(
                f"{command}-data-{bad.name}",
                argv.replace("{bad}", place),
                code=(codes or {}).get(name, bad.code),
                says=(place, *bad.says),
                not_says=not_says if bad.code == "E105" else (),
                setup=write_bytes(place, bad.content),
                defect="9" if not_says and bad.code == "E105" else "",
            )
        )
    return cases


def missing_and_odd_paths(command: str, argv: str, code: str, odd_code: str) -> list[Case]:
    """A path that does not exist (``code``); one that is a folder, and /dev/null (``odd_code``,
    a message saying what the path is, not that it does not exist: defect 10)."""
    return [
        Case(
            f"{command}-path-missing",
            argv.replace("{path}", "{root}/nowhere.jsonl"),
            code=code,
            says=("{root}/nowhere.jsonl",),
        ),
        Case(
            f"{command}-path-is-a-folder",
            argv.replace("{path}", "{root}/folder.jsonl"),
            code=odd_code,
            says=("{root}/folder.jsonl", "folder"),
            not_says=("does not exist",),
            setup=mkdir("{root}/folder.jsonl"),
            defect="10",
        ),
        Case(
            f"{command}-path-is-dev-null",
            argv.replace("{path}", "/dev/null"),
            code=odd_code,
            says=("/dev/null",),
            not_says=("does not exist",),
            defect="10",
        ),
    ]


# ------------------------------------------------------------------------------------------
# task.toml: the loader every command shares, reached through each command in turn

TASK_ERRORS = [
    # (id, setup, code, fragments)
    ("toml-syntax", write("{task}", 'name = "x"\nlabels = \n'), "E002", ("{task}", "line 2")),
    ("toml-not-utf8", write_bytes("{task}", b'name = "caf\xe9"\n'), "E002", ("{task}", "UTF-8")),
    ("toml-duplicate-key", prepend("{task}", 'name = "again"\n'), "E002", ("{task}",)),
    ("name-missing", edit("{task}", 'name = "nusax-sentiment-en"\n', ""), "E003", ("`name`",)),
    (
        "unknown-key",
        edit("{task}", 'kind = "classify"', 'kind = "classify"\nnmae = "typo"'),
        "E003",
        ("`nmae`",),
    ),
    (
        "kind-unknown",
        edit("{task}", 'kind = "classify"', 'kind = "regression"'),
        "E003",
        ("`kind`",),
    ),
    (
        "labels-empty",
        write("{task}", 'name = "t"\n[labels]\n'),
        "E003",
        ("`labels`",),
    ),
    (
        "one-label",
        write("{task}", 'name = "t"\n[labels]\npositive = "p"\n'),
        "E003",
        ("at least 2 labels",),
    ),
    (
        "label-spaces",
        write("{task}", 'name = "t"\n[labels]\n" positive" = "p"\nnegative = "n"\n'),
        "E003",
        ("' positive'",),
    ),
    ("n-ctx-small", edit("{task}", "n_ctx = 2048", "n_ctx = 10"), "E003", ("llm.n_ctx",)),
    (
        "batch-size-text",
        edit("{task}", "batch_size = 4", 'batch_size = "big"'),
        "E003",
        ("llm.batch_size",),
    ),
    (
        "score-tolerance",
        edit("{task}", "batch_size = 4", "batch_size = 4\nscore_tolerance = 1.5"),
        "E003",
        ("llm.score_tolerance",),
    ),
    ("gate-unknown-rule", edit("{task}", "min_accuracy", "min_acc"), "E003", ("gate.min_acc",)),
    (
        "languages-string",
        edit("{task}", 'languages = ["en"]', 'languages = "en"'),
        "E003",
        ("`languages`",),
    ),
    (
        "example-unknown-label",
        append("{task}", '\n[[examples]]\ntext = "Nice."\nlabel = "happy"\n'),
        "E003",
        ("examples[0]", "'happy'"),
    ),
    (
        "privacy-mode-unknown",
        append("{task}", '\n[privacy]\nremote = "encrypt"\n'),
        "E003",
        ("privacy.remote", "'encrypt'"),
    ),
    (
        "privacy-entity-unknown",
        append("{task}", '\n[privacy]\nentities = ["PERSON", "SHOE_SIZE"]\n'),
        "E003",
        ("privacy.entities", "'SHOE_SIZE'"),
    ),
    (
        "guard-injection-unknown",
        edit("{task}", 'injection = "off"', 'injection = "quarantine"'),
        "E003",
        ("guard.injection", "'quarantine'", "route"),
    ),
    (
        "guard-detector-unknown",
        edit("{task}", 'injection = "off"', 'injection = "off"\ndetector = "bert"'),
        "E003",
        ("guard.detector", "'bert'", "encoder-ngrams"),
    ),
    (
        "guard-threshold-above-one",
        edit("{task}", 'injection = "off"', 'injection = "off"\nthreshold = 1.5'),
        "E003",
        ("guard.threshold", "1.5"),
    ),
    (
        "llm-spotlight-unknown",
        edit("{task}", "[llm]", '[llm]\nspotlight = "highlight"'),
        "E003",
        ("llm.spotlight", "'highlight'", "datamark"),
    ),
    (
        "path-key",
        edit("{task}", 'kind = "classify"', 'kind = "classify"\npath = "x"'),
        "E004",
        ("`path`",),
    ),
    (
        "input-text-empty",
        edit("{task}", 'text = "text"', 'text = ""'),
        ("E003", "E004"),
        (("input.text", "[input].text"),),
    ),
]


def task_error_cases(command: str, argv: str, names: list[str]) -> list[Case]:
    table = {name: (setup, code, says) for name, setup, code, says in TASK_ERRORS}
    cases = []
    for name in names:
        setup, code, says = table[name]
        defect = "14" if name == "input-text-empty" else ""
        cases.append(
            Case(
                f"{command}-task-{name}",
                argv,
                code=code,
                says=("{task}", *says) if "{task}" not in says else says,
                setup=setup,
                defect=defect,
            )
        )
    return cases


def task_path_cases(command: str, argv: str) -> list[Case]:
    """--task that does not exist, is a folder without task.toml, is /dev/null, or whose
    task.toml is a folder (defect 10's family: E001 said of paths that exist)."""
    return [
        Case(
            f"{command}-task-missing",
            argv.replace("{task}", "{root}/nowhere/task.toml"),
            code="E001",
            says=("{root}/nowhere/task.toml",),
        ),
        Case(
            f"{command}-task-folder-without-toml",
            argv.replace("{task}", "{root}/data"),
            code="E001",
            says=("{root}/data/task.toml",),
        ),
        Case(
            f"{command}-task-is-dev-null",
            argv.replace("{task}", "/dev/null"),
            code=("E006",),
            says=("/dev/null",),
            not_says=("does not exist",),
            defect="10",
        ),
        Case(
            f"{command}-task-toml-is-a-folder",
            argv.replace("{task}", "{root}/weird"),
            code=("E006",),
            says=("{root}/weird/task.toml", "folder"),
            not_says=("does not exist",),
            setup=mkdir("{root}/weird/task.toml"),
            defect="10",
        ),
    ]


# ------------------------------------------------------------------------------------------
# the table

EXPORT = "export --task {task} --out {out}/labels.jsonl"
ANNOTATE = "annotate --task {task} --input {data} --limit 2"
EVALUATE = (
    "evaluate --task {task} --test {test} --system file=preds:{preds} --bootstrap 20 "
    "--efficiency-sample 0 --out {out}"
)
GATE = "gate --task {task} --results {results}"
TRAIN = "train --task {task} --data {data} --out {out}"
PREDICT = "predict --model {model} --input {texts} --out {out}/p.jsonl"
AUDIT = "audit --task {task} --data {data} --checks duplicates,text --out {out}"

CASES: list[Case] = []

# --- init -----------------------------------------------------------------------------------
CASES += [
    Case("init-ok", "init {out}/new", exit=0, outputs=("{out}",)),
    Case(
        "init-existing-task",
        "init {taskdir}",
        code="E005",
        says=("{taskdir}",),
    ),
    Case("init-directory-is-a-file", "init {data}", says=("{data}",)),
    Case("init-under-a-file", "init {data}/sub", says=("{data}",)),
    Case(
        "init-task-toml-is-a-folder",
        "init {out}",
        says=("{out}", "task.toml"),
        setup=mkdir("{out}/task.toml"),
    ),
    Case("init-no-argument", "init", says=("'directory'",)),
    Case("init-unknown-option", "init {out} --force", says=("--force",)),
    Case(
        "init-read-only-folder",
        "init " + RO + "/new",
        code=FS_WRITE_CODES,
        says=(RO,),
        setup=MAKE_RO,
        run="mounts",
        prepare=PREPARE_RO,
        defect="7",
    ),
    Case(
        "init-disk-full",
        "init " + FULL + "/new",
        code=FULL_CODES,
        says=(FULL,),
        setup=MAKE_FULL,
        run="mounts",
        prepare=PREPARE_FULL,
        defect="7",
    ),
]

# --- models ---------------------------------------------------------------------------------
CASES += [
    Case("models-ok", "models", exit=0),
    Case("models-json", "models --json", exit=0, says=("smollm2-135m",)),
    Case("models-unknown-option", "models --all", says=("--all",)),
    Case(
        "models-home-is-a-file",
        "models",
        code="E315",
        says=("{root}/home-file", "not a folder"),
        setup=write("{root}/home-file", "not a folder\n"),
        env={"STILLHOUSE_HOME": "{root}/home-file"},
        defect="7",
    ),
    Case(
        "models-home-read-only",
        "models",
        says=(RO,),
        setup=MAKE_RO,
        env={"STILLHOUSE_HOME": RO},
        run="mounts",
        prepare=PREPARE_RO,
        defect="7",
    ),
]

# --- demo -----------------------------------------------------------------------------------
# A workspace an earlier demo made up to (and including) the audit step: its files exist (what
# --step checks), their content does not matter to the checks.
DEMO_STATE = json.dumps({"settings": {"model": "smollm2-135m", "pool": 30, "test_limit": 10}})


def demo_workspace_after_audit(ws: Workspace) -> None:
    root = ws.path("{out}/demo")
    (root / "audit").mkdir(parents=True)
    (root / "demo.json").write_text(DEMO_STATE, encoding="utf-8")
    for name in ("pool.csv", "test.csv", "stillhouse.db", "audit/audit.json", "audit/audit.html"):
        (root / name).write_text("made by an earlier demo\n", encoding="utf-8")


CASES += [
    Case("demo-pool-zero", "demo --pool 0 --model smollm2-135m", says=("--pool",)),
    Case(
        "demo-pool-larger-than-the-example",
        "demo --workspace {out}/demo --pool 100000 --model smollm2-135m",
        code="E410",
        says=("--pool 100000", "500"),
    ),
    Case(
        "demo-test-limit-too-small",
        "demo --workspace {out}/demo --test-limit 3 --model smollm2-135m",
        code="E410",
        says=("--test-limit 3",),
    ),
    Case(
        "demo-unknown-model",
        "demo --workspace {out}/demo --model nosuch",
        code="E305",
        says=("nosuch",),
    ),
    Case(
        "demo-workspace-is-a-file",
        "demo --workspace {data} --model smollm2-135m",
        says=("{data}",),
    ),
    Case(
        "demo-workspace-under-a-file",
        "demo --workspace {data}/demo --model smollm2-135m",
        says=("{data}",),
        code=(*FILE_IN_PATH_CODES,),
    ),
    Case("demo-unknown-step", "demo --workspace {out}/demo --step deploy", says=("--step",)),
    Case(
        "demo-step-on-an-empty-workspace",
        "demo --workspace {out}/demo --step gate --model smollm2-135m",
        code="E407",
        says=("--step gate", "pool.csv", "annotate"),
    ),
    Case(
        "demo-step-after-a-missing-train",
        "demo --workspace {out}/demo --step evaluate",
        code="E407",
        says=("--step evaluate", "card.json", "--step train"),
        setup=demo_workspace_after_audit,
    ),
    Case(
        "demo-settings-differ-from-the-workspace",
        "demo --workspace {out}/demo --step train --pool 40",
        code="E408",
        says=("--pool 30", "not 40"),
        setup=demo_workspace_after_audit,
    ),
    Case(
        "demo-not-a-demo-workspace",
        "demo --workspace {out}/demo --model smollm2-135m",
        code="E409",
        says=("{out}/demo", "notes.txt"),
        setup=write("{out}/demo/notes.txt", "mine\n"),
    ),
    Case(
        "demo-state-damaged",
        "demo --workspace {out}/demo --step gate",
        code="E411",
        says=("demo.json",),
        setup=write("{out}/demo/demo.json", "{not json\n"),
    ),
]

# --- annotate -------------------------------------------------------------------------------
CASES += [
    Case(
        "annotate-ok-resumes",
        ANNOTATE,
        exit=0,
        says=("2 already done",),
        store_writes=True,
    ),
    Case("annotate-no-input", "annotate --task {task}", says=("--input",)),
    Case("annotate-no-task", "annotate --input {data}", says=("--task",)),
    Case(
        "annotate-limit-zero", "annotate --task {task} --input {data} --limit 0", says=("--limit",)
    ),
    Case(
        "annotate-limit-text",
        "annotate --task {task} --input {data} --limit many",
        says=("--limit",),
    ),
    Case("annotate-shots-negative", ANNOTATE + " --shots -1", says=("--shots",)),
    Case("annotate-threads-zero", ANNOTATE + " --threads 0", says=("--threads",)),
    Case("annotate-method-unknown", ANNOTATE + " --method vote", code="E403", says=("vote",)),
    Case("annotate-model-unknown", ANNOTATE + " --model gpt-9", code="E305", says=("gpt-9",)),
    Case(
        "annotate-model-gguf-missing",
        ANNOTATE + " --model {root}/nowhere.gguf",
        code="E301",
        says=("{root}/nowhere.gguf",),
    ),
    Case(
        "annotate-model-not-gguf",
        ANNOTATE + " --model {root}/fake.gguf",
        code="E302",
        says=("{root}/fake.gguf",),
        setup=write("{root}/fake.gguf", "not a model\n"),
    ),
    Case(
        "annotate-model-gguf-is-a-folder",
        ANNOTATE + " --model {root}/folder.gguf",
        code="E314",
        says=("{root}/folder.gguf",),
        not_says=("does not exist",),
        setup=mkdir("{root}/folder.gguf"),
        defect="10",
    ),
    Case(
        "annotate-model-openai-malformed",
        ANNOTATE + " --model openai:nowhere",
        code="E311",
        says=("openai:nowhere",),
    ),
    Case(
        "annotate-shots-without-labels",
        "annotate --task {task} --input {texts} --limit 2 --shots 2",
        code="E402",
        says=("{texts}",),
    ),
    Case(
        "annotate-input-is-the-store",
        "annotate --task {task} --input {store}",
        code="E102",
        says=("{store}", ".db"),
    ),
    Case(
        "annotate-input-is-the-task",
        "annotate --task {task} --input {task}",
        code="E102",
        says=("{task}", ".toml"),
    ),
    Case(
        "annotate-skip-invalid-all-invalid",
        "annotate --task {task} --input {root}/bad.jsonl --skip-invalid",
        code="E109",
        says=("{root}/bad.jsonl:1",),
        setup=write("{root}/bad.jsonl", "{not json\n[1]\n"),
    ),
    Case(
        "annotate-changed-text-for-stored-id",
        "annotate --task {task} --input {root}/changed.jsonl",
        code="E207",
        says=("'219'", "{store}"),
        setup=changed_text_for_stored_id,
        defect="4",
    ),
    Case(
        "annotate-label-renamed-in-task",
        "annotate --task {task} --input {texts} --limit 1",
        code="E206",
        says=("positive", "pleased", "{store}"),
        setup=RENAMED,
        defect="5",
    ),
    Case(
        "annotate-second-task-shares-store",
        "annotate --task {taskdir}/other.toml --input {texts} --limit 1",
        code="E205",
        says=("{store}", "another-task"),
        setup=SECOND_TASK,
        defect="5",
    ),
    Case(
        "annotate-store-not-sqlite",
        ANNOTATE,
        code="E201",
        says=("{store}",),
        setup=write_bytes("{store}", b"this is no database" * 100),
    ),
    Case(
        "annotate-store-newer-schema",
        ANNOTATE,
        code="E203",
        says=("{store}", "99"),
        setup=sql("UPDATE meta SET value = '99' WHERE key = 'schema_version'"),
    ),
    Case(
        "annotate-store-is-a-folder",
        ANNOTATE,
        says=("{store}",),
        not_says=("not a stillhouse store",),
        setup=chain(remove("{store}"), mkdir("{store}")),
    ),
    Case(
        "annotate-home-is-a-file",
        ANNOTATE,
        code="E315",
        says=("{root}/home-file", "not a folder"),
        setup=write("{root}/home-file", "not a folder\n"),
        env={"STILLHOUSE_HOME": "{root}/home-file"},
        defect="7",
    ),
    Case(
        "annotate-store-locked",
        ANNOTATE,
        code="E208",
        says=("{store}",),
        not_says=("not a stillhouse store",),
        run="fault",
        fault=store_locked,
        env=LOCKED_ENV,
        defect="11",
        slow=True,
    ),
    Case(
        "annotate-store-disk-full",
        "annotate --task " + FULL_STORE + "/task.toml --input {data} --limit 3",
        says=(FULL_STORE + "/stillhouse.db",),
        code=("E209", "E112", "E126"),
        not_says=("not a stillhouse store",),
        setup=MAKE_FULL_STORE,
        run="mounts",
        prepare=PREPARE_FULL_STORE,
        defect="11",
        slow=True,
    ),
    Case(
        "annotate-killed-then-resumed",
        "annotate --task {task} --input {data} --limit 10",
        exit=0,
        store_writes=True,
        check=no_run_left_running,
        run="fault",
        fault=kill_annotate_then_rerun,
        defect="16",
        slow=True,
    ),
    Case(
        "annotate-interrupted",
        "annotate --task {task} --input {data} --limit 10",
        exit=130,
        says=("interrupted", "every committed batch is kept"),
        store_writes=True,
        run="fault",
        fault=interrupt_annotate,
        slow=True,
    ),
]
CASES += task_path_cases("annotate", ANNOTATE)
CASES += task_error_cases(
    "annotate",
    ANNOTATE,
    [
        "toml-syntax",
        "name-missing",
        "unknown-key",
        "input-text-empty",
        "privacy-mode-unknown",
        "privacy-entity-unknown",
        "guard-injection-unknown",
        "guard-detector-unknown",
        "guard-threshold-above-one",
        "llm-spotlight-unknown",
    ],
)
CASES += bad_data_cases(
    "annotate",
    "annotate --task {task} --input {bad}",
    [
        "invalid-json-line",
        "missing-text",
        "text-whitespace",
        "duplicate-id",
        "unknown-label",
        "bad-utf8",
        "empty-file",
        "surrogate",
        "json-invalid",
        "csv-no-text-column",
        "csv-ragged-row",
        "parquet-garbage",
        "unsupported-suffix",
    ],
)
CASES += missing_and_odd_paths("annotate", "annotate --task {task} --input {path}", "E101", "E108")

# --- export ---------------------------------------------------------------------------------
CASES += [
    Case("export-ok", EXPORT, exit=0, outputs=("{out}",)),
    Case("export-ok-gold", EXPORT + " --annotator gold", exit=0, outputs=("{out}",)),
    Case("export-ok-llm-json", EXPORT + " --annotator llm --json", exit=0, outputs=("{out}",)),
    Case(
        "export-ok-full-annotator-id",
        EXPORT + " --annotator llm:smollm2-135m@00000000",
        exit=0,
        outputs=("{out}",),
    ),
    Case(
        "export-ok-overwrites-its-previous-output",
        EXPORT,
        exit=0,
        outputs=("{out}",),
        setup=write("{out}/labels.jsonl", "an older export\n"),
    ),
    Case(
        "export-ok-bom-in-task",
        EXPORT,
        outputs=("{out}",),
        setup=lambda ws: ws["task"].write_bytes(b"\xef\xbb\xbf" + ws["task"].read_bytes()),
        exit=(0, 2),
        says=("BOM",),
        defect="14",
    ),
    Case("export-no-out", "export --task {task}", says=("--out",)),
    Case("export-unknown-annotator", EXPORT + " --annotator robot", code="E401", says=("robot",)),
    Case("export-no-human-labels", EXPORT + " --annotator human", code="E202", says=("{store}",)),
    Case(
        "export-out-is-the-store",
        "export --task {task} --out {store}",
        code="E120",
        says=("--out", "{store}"),
        defect="1",
    ),
    Case(
        "export-out-is-the-task",
        "export --task {task} --out {task}",
        code="E120",
        says=("--out", "{task}"),
        defect="1",
    ),
    Case(
        "export-out-is-the-store-wal",
        "export --task {task} --out {store}-wal",
        code="E120",
        says=("--out", "{store}-wal"),
        defect="1",
    ),
    Case(
        "export-out-is-a-link-to-the-store",
        "export --task {task} --out {root}/alias.jsonl",
        code="E120",
        says=("--out", "{root}/alias.jsonl"),
        setup=symlink("{root}/alias.jsonl", "{store}"),
        defect="1",
    ),
    Case(
        "export-out-is-a-folder",
        "export --task {task} --out {out}",
        code=FOLDER_CODES,
        says=("{out}",),
        setup=mkdir("{out}"),
        defect="7",
    ),
    Case(
        "export-out-under-a-file",
        "export --task {task} --out {data}/labels.jsonl",
        code=FILE_IN_PATH_CODES,
        says=("{data}",),
        defect="7",
    ),
    Case(
        "export-out-read-only",
        "export --task {task} --out " + RO + "/labels.jsonl",
        code=FS_WRITE_CODES,
        says=(RO,),
        setup=MAKE_RO,
        run="mounts",
        prepare=PREPARE_RO,
        defect="7",
    ),
    Case(
        "export-out-disk-full",
        "export --task {task} --out " + FULL + "/labels.jsonl",
        code=FULL_CODES,
        says=(FULL,),
        setup=MAKE_FULL,
        run="mounts",
        prepare=PREPARE_FULL,
        defect="7",
    ),
    Case(
        "export-no-store-creates-none",
        EXPORT,
        code="E204",
        says=("{store}",),
        setup=remove("{store}"),
        defect="17",
    ),
    Case(
        "export-label-renamed-in-task",
        EXPORT,
        code="E206",
        says=("positive", "pleased"),
        setup=RENAMED,
        defect="5",
    ),
    Case(
        "export-second-task-shares-store",
        "export --task {taskdir}/other.toml --out {out}/labels.jsonl",
        code="E205",
        says=("{store}", "another-task"),
        setup=SECOND_TASK,
        defect="5",
    ),
    Case(
        "export-store-not-sqlite",
        EXPORT,
        code="E201",
        says=("{store}",),
        setup=write_bytes("{store}", b"this is no database" * 100),
    ),
    Case(
        "export-store-truncated",
        EXPORT,
        says=("{store}",),
        setup=lambda ws: ws["store"].write_bytes(ws["store"].read_bytes()[:5000]),
    ),
    Case(
        "export-store-newer-schema",
        EXPORT,
        code="E203",
        says=("{store}",),
        setup=sql("UPDATE meta SET value = '99' WHERE key = 'schema_version'"),
    ),
    Case(
        "export-store-locked",
        EXPORT,
        code="E208",
        says=("{store}",),
        not_says=("not a stillhouse store",),
        run="fault",
        fault=store_locked,
        env=LOCKED_ENV,
        defect="11",
        slow=True,
    ),
    Case(
        "export-store-disk-full",
        "export --task " + FULL_STORE + "/task.toml --out {out}/labels.jsonl",
        says=(FULL_STORE + "/stillhouse.db",),
        not_says=("not a stillhouse store",),
        outputs=("{out}",),
        setup=MAKE_FULL_STORE,
        run="mounts",
        prepare=PREPARE_FULL_STORE,
        exit=(0, 2),
        defect="11",
    ),
]
CASES += task_path_cases("export", EXPORT)
CASES += task_error_cases(
    "export",
    EXPORT,
    [
        "toml-syntax",
        "toml-not-utf8",
        "toml-duplicate-key",
        "kind-unknown",
        "labels-empty",
        "one-label",
        "label-spaces",
        "path-key",
        "input-text-empty",
    ],
)

# --- evaluate -------------------------------------------------------------------------------
EV = "evaluate --task {task} --test {test} --bootstrap 20 --efficiency-sample 0 --out {out}"
CASES += [
    Case("evaluate-ok-preds", EVALUATE, exit=0, outputs=("{out}",)),
    Case(
        "evaluate-ok-model",
        EV + " --system m=model:{model}",
        exit=0,
        outputs=("{out}",),
    ),
    Case(
        "evaluate-ok-csv-test",
        EVALUATE.replace("{test}", "{test_csv}"),
        exit=0,
        outputs=("{out}",),
    ),
    Case("evaluate-no-system", EV, code="E504", says=("--system",)),
    Case("evaluate-system-no-name", EV + " --system preds", code="E502", says=("preds",)),
    Case(
        "evaluate-system-unknown-source",
        EV + " --system x=magic:thing",
        code="E502",
        says=("x=magic:thing", "magic"),
    ),
    Case(
        "evaluate-system-twice",
        EV + " --system a=preds:{preds} --system a=preds:{preds}",
        code="E517",
        says=("`a`",),
    ),
    Case(
        "evaluate-system-no-value",
        EV + " --system a=preds:",
        code="E502",
        says=("a=preds:",),
    ),
    Case(
        "evaluate-preds-missing",
        EV + " --system a=preds:{root}/nowhere.jsonl",
        code="E101",
        says=("{root}/nowhere.jsonl",),
    ),
    Case(
        "evaluate-preds-is-a-folder",
        EV + " --system a=preds:{root}/folder.jsonl",
        code="E108",
        says=("{root}/folder.jsonl", "folder"),
        not_says=("does not exist",),
        setup=mkdir("{root}/folder.jsonl"),
        defect="10",
    ),
    Case(
        "evaluate-preds-csv",
        EV + " --system a=preds:{test_csv}",
        code="E505",
        says=("{test_csv}",),
    ),
    Case(
        "evaluate-preds-invalid-json",
        EV + " --system a=preds:{root}/p.jsonl",
        code="E103",
        says=("{root}/p.jsonl:2",),
        setup=write("{root}/p.jsonl", '{"id": "1", "label": "positive"}\n{"id": \n'),
    ),
    Case(
        "evaluate-preds-unknown-label",
        EV + " --system a=preds:{root}/p.jsonl",
        code="E508",
        says=("{root}/p.jsonl:1", "'happy'"),
        setup=rows("{root}/p.jsonl", {"id": "1", "label": "happy"}),
    ),
    Case(
        "evaluate-preds-probs-sum",
        EV + " --system a=preds:{root}/p.jsonl",
        code="E509",
        says=("{root}/p.jsonl:1",),
        setup=rows(
            "{root}/p.jsonl",
            {
                "id": "1",
                "label": "positive",
                "probs": {"positive": 0.9, "neutral": 0.9, "negative": 0.9},
            },
        ),
    ),
    Case(
        "evaluate-preds-probs-nan",
        EV + " --system a=preds:{root}/p.jsonl",
        code="E509",
        says=("{root}/p.jsonl:1",),
        setup=write(
            "{root}/p.jsonl",
            '{"id": "1", "label": "positive", "probs": '
            '{"positive": NaN, "neutral": 0.5, "negative": 0.5}}\n',
        ),
    ),
    Case(
        "evaluate-preds-probs-some-rows",
        EV + " --system a=preds:{root}/p.jsonl",
        code="E510",
        says=("{root}/p.jsonl:2",),
        setup=rows(
            "{root}/p.jsonl",
            {
                "id": "1",
                "label": "positive",
                "probs": {"positive": 0.8, "neutral": 0.1, "negative": 0.1},
            },
            {"id": "2", "label": "negative"},
        ),
    ),
    Case(
        "evaluate-preds-duplicate-id",
        EV + " --system a=preds:{root}/p.jsonl",
        code="E507",
        says=("{root}/p.jsonl:2", "'1'"),
        setup=rows(
            "{root}/p.jsonl",
            {"id": "1", "label": "positive"},
            {"id": "1", "label": "negative"},
        ),
    ),
    Case(
        "evaluate-preds-id-null",
        EV + " --system a=preds:{root}/p.jsonl",
        code="E506",
        says=("{root}/p.jsonl:1", "`id`"),
        setup=rows("{root}/p.jsonl", {"id": None, "label": "positive"}),
    ),
    Case(
        "evaluate-preds-row-not-object",
        EV + " --system a=preds:{root}/p.jsonl",
        code="E506",
        says=("{root}/p.jsonl:1",),
        setup=write("{root}/p.jsonl", "[1, 2]\n"),
    ),
    Case(
        "evaluate-preds-foreign-ids",
        EV + " --system a=preds:{root}/p.jsonl",
        code="E511",
        says=("{root}/p.jsonl", "'not-a-test-id'"),
        setup=rows("{root}/p.jsonl", {"id": "not-a-test-id", "label": "positive"}),
    ),
    Case(
        "evaluate-preds-missing-ids",
        EV + " --system a=preds:{root}/p.jsonl",
        code="E512",
        says=("{root}/p.jsonl",),
        setup=lambda ws: (ws.root / "p.jsonl").write_text(
            "".join(ws["preds"].read_text(encoding="utf-8").splitlines(keepends=True)[:5]),
            encoding="utf-8",
        ),
    ),
    Case(
        "evaluate-preds-bad-utf8",
        EV + " --system a=preds:{root}/p.jsonl",
        code="E107",
        says=("{root}/p.jsonl",),
        setup=write_bytes("{root}/p.jsonl", b'{"id": "1", "label": "pos\xe9"}\n'),
    ),
    Case(
        "evaluate-model-missing",
        EV + " --system m=model:{root}/nowhere",
        code="E720",
        says=("{root}/nowhere",),
    ),
    Case(
        "evaluate-model-is-a-file",
        EV + " --system m=model:{data}",
        code="E727",
        says=("{data}",),
        not_says=("does not exist",),
        defect="10",
    ),
    Case(
        "evaluate-model-is-dev-null",
        EV + " --system m=model:/dev/null",
        code="E727",
        says=("/dev/null",),
        not_says=("does not exist",),
        defect="10",
    ),
    Case(
        "evaluate-model-card-temperature-edited",
        EV + " --system m=model:{model}",
        code=("E721", "E725"),
        says=("{model}", "card.json"),
        setup=edit_json(CARD, set_temperature),
        defect="6",
    ),
    Case(
        "evaluate-model-card-labels-reordered",
        EV + " --system m=model:{model}",
        code=("E721", "E725"),
        says=("{model}", "card.json"),
        setup=edit_json(CARD, swap_card_labels),
        defect="6",
    ),
    Case(
        "evaluate-model-no-manifest",
        EV + " --system m=model:{model}",
        code="E721",
        says=("{model}", "manifest.json"),
        setup=remove("{model}/manifest.json"),
    ),
    Case(
        "evaluate-model-extra-file",
        EV + " --system m=model:{model}",
        code="E726",
        says=("{model}", "notes.txt"),
        setup=write("{model}/notes.txt", "my notes\n"),
    ),
    Case(
        "evaluate-model-weights-truncated",
        EV + " --system m=model:{model}",
        code=("E721", "E725"),
        says=("{model}", "weights.safetensors"),
        setup=truncate_weights,
    ),
    Case(
        "evaluate-model-card-not-json",
        EV + " --system m=model:{model}",
        code=("E721", "E725"),
        says=("{model}", "card.json"),
        setup=write(CARD, "{ not json"),
    ),
    Case(
        "evaluate-model-labels-differ-from-task",
        EV + " --system m=model:{model}",
        code="E723",
        says=("{model}", "pleased"),
        setup=chain(RENAMED, edit("{test}", '"positive"', '"pleased"', count=100)),
    ),
    Case(
        "evaluate-cascade-edited-card",
        EV + " --system c=cascade:model:{model}@0.9,llm:smollm2-135m",
        code=("E721", "E725"),
        says=("{model}", "card.json"),
        setup=edit_json(CARD, set_temperature),
        defect="6",
    ),
    Case(
        "evaluate-cascade-missing-threshold",
        EV + " --system c=cascade:model:{model},llm:smollm2-135m",
        code="E539",
        says=("stage 1",),
    ),
    Case(
        "evaluate-cascade-unknown-source",
        EV + " --system c=cascade:magic:x@0.5,model:{model}",
        code="E539",
        says=("magic",),
    ),
    Case(
        "evaluate-cascade-threshold-text",
        EV + " --system c=cascade:model:{model}@high,model:{model}",
        code="E539",
        says=("high",),
    ),
    Case(
        "evaluate-by-lang-no-fallback",
        EV + " --system m=by-lang:en={model}",
        code="E751",
        says=("`*`",),
    ),
    Case(
        "evaluate-by-lang-not-a-language",
        EV + " --system m=by-lang:english={model},*={model}",
        code="E750",
        says=("`english`",),
    ),
    Case(
        "evaluate-by-lang-language-twice",
        EV + " --system m=by-lang:en={model},en={model},*={model}",
        code="E750",
        says=("already has a route",),
    ),
    Case(
        "evaluate-llm-unknown-model",
        EV + " --system l=llm:gpt-9",
        code="E305",
        says=("gpt-9",),
    ),
    Case("evaluate-bootstrap-zero", EVALUATE + " --bootstrap 0", says=("--bootstrap",)),
    Case("evaluate-seed-negative", EVALUATE + " --seed -1", says=("--seed",)),
    Case(
        "evaluate-efficiency-negative",
        EVALUATE + " --efficiency-sample -1",
        says=("--efficiency-sample",),
    ),
    Case(
        "evaluate-target-precision-above-one",
        EVALUATE + " --target-precision 2",
        code="E515",
        says=("2",),
    ),
    Case("evaluate-slice-unknown", EVALUATE + " --slice lang", code="E516", says=("`lang`",)),
    Case("evaluate-redteam-zero", EVALUATE + " --redteam 0", code="E930", says=("--redteam",)),
    Case("evaluate-redteam-negative", EVALUATE + " --redteam -5", code="E930", says=("-5",)),
    Case("evaluate-redteam-not-a-number", EVALUATE + " --redteam many", says=("--redteam",)),
    Case("evaluate-redteam-no-value", EVALUATE + " --redteam", says=("--redteam",)),
    Case(
        "evaluate-redteam-preds-not-measured",
        EVALUATE + " --redteam 5",
        exit=0,
        says=("red team not measured",),
        outputs=("{out}",),
    ),
    Case(
        "evaluate-perturb-unknown",
        EVALUATE + " --perturb shouting",
        code="E534",
        says=("`shouting`",),
    ),
    Case(
        "evaluate-out-is-a-file",
        EVALUATE.replace("--out {out}", "--out {data}"),
        code=("E123", "E114"),
        says=("--out", "{data}"),
        defect="7",
    ),
    Case(
        "evaluate-out-is-the-task",
        EVALUATE.replace("--out {out}", "--out {task}"),
        code=("E120", "E123"),
        says=("--out", "{task}"),
        defect="1",
    ),
    Case(
        "evaluate-out-inside-the-model",
        (EV + " --system m=model:{model}").replace("--out {out}", "--out {model}"),
        code="E120",
        says=("--out", "{model}"),
        defect="1",
    ),
    Case(
        "evaluate-out-is-the-preds-folder",
        EV.replace("--out {out}", "--out {root}/preds2")
        + " --system a=preds:{root}/preds2/results.jsonl",
        exit=0,
        outputs=("{root}/preds2/results.json", "{root}/preds2/report.html"),
        setup=copy("{preds}", "{root}/preds2/results.jsonl"),
    ),
    Case(
        "evaluate-out-read-only",
        EVALUATE.replace("--out {out}", "--out " + RO + "/run"),
        code=FS_WRITE_CODES,
        says=("--out", RO),
        setup=MAKE_RO,
        run="mounts",
        prepare=PREPARE_RO,
        defect="7",
    ),
    Case(
        "evaluate-out-disk-full",
        EVALUATE.replace("--out {out}", "--out " + FULL + "/run"),
        code=FULL_CODES,
        says=(FULL,),
        setup=MAKE_FULL,
        run="mounts",
        prepare=PREPARE_FULL,
        defect="7",
    ),
]
CASES += task_path_cases("evaluate", EVALUATE)
CASES += task_error_cases(
    "evaluate",
    EVALUATE,
    ["toml-syntax", "n-ctx-small", "batch-size-text", "example-unknown-label", "input-text-empty"],
)
CASES += bad_data_cases(
    "evaluate",
    "evaluate --task {task} --test {bad} --system file=preds:{preds} --out {out}",
    [
        "invalid-json-line",
        "missing-text",
        "unknown-label",
        "bad-utf8",
        "empty-file",
        "json-not-array",
        "csv-header-only",
        "parquet-garbage",
    ],
    not_says=("--skip-invalid",),
)
CASES += [
    Case(
        "evaluate-data-test-without-labels",
        "evaluate --task {task} --test {texts} --system file=preds:{preds} --out {out}",
        code="E105",
        says=("{texts}:1", "`label`"),
        not_says=("--skip-invalid",),
        defect="9",
    ),
]
CASES += missing_and_odd_paths(
    "evaluate",
    "evaluate --task {task} --test {path} --system file=preds:{preds} --out {out}",
    "E101",
    "E108",
)

# --- gate -----------------------------------------------------------------------------------
CASES += [
    Case("gate-ok", GATE, exit=0, says=("PASS",)),
    Case("gate-ok-json", GATE + " --json", exit=0, says=('"passed": true',)),
    Case("gate-ok-model-system", GATE + " --system model", exit=0),
    Case(
        "gate-fails",
        GATE,
        exit=1,
        says=("min_accuracy", "FAIL"),
        setup=edit("{task}", "min_accuracy = 0.3", "min_accuracy = 0.99"),
    ),
    Case(
        "gate-fails-json",
        GATE + " --json",
        exit=1,
        says=('"passed": false',),
        setup=edit("{task}", "min_accuracy = 0.3", "min_accuracy = 0.99"),
    ),
    Case(
        "gate-not-measured-fails",
        GATE,
        exit=1,
        says=("not measured",),
        setup=edit("{task}", "min_accuracy = 0.3", "max_p95_latency_ms = 50"),
    ),
    Case(
        "gate-help-shows-gate-table",
        "gate --help",
        exit=0,
        says=("[gate]",),
        defect="15",
    ),
    Case("gate-no-results", "gate --task {task}", says=("--results",)),
    Case(
        "gate-results-missing",
        "gate --task {task} --results {root}/nowhere.json",
        code="E520",
        says=("{root}/nowhere.json",),
    ),
    Case(
        "gate-results-is-a-folder",
        "gate --task {task} --results {root}/reports/base",
        code="E523",
        says=("{root}/reports/base", "folder"),
        not_says=("does not exist",),
        defect="10",
    ),
    Case(
        "gate-results-is-dev-null",
        "gate --task {task} --results /dev/null",
        code="E523",
        says=("/dev/null",),
        not_says=("does not exist",),
        defect="10",
    ),
    Case(
        "gate-results-not-json",
        GATE,
        code="E521",
        says=("{results}",),
        setup=write("{results}", "<html>not json</html>\n"),
    ),
    Case(
        "gate-results-not-utf8",
        GATE,
        code="E521",
        says=("{results}",),
        setup=write_bytes("{results}", b'{"schema_version": "\xff"}'),
    ),
    Case(
        "gate-results-no-version",
        GATE,
        code="E521",
        says=("{results}", "schema_version"),
        setup=write("{results}", '{"systems": {}}'),
    ),
    Case(
        "gate-results-newer-version",
        GATE,
        code="E522",
        says=("{results}",),
        setup=edit_json("{results}", lambda doc: doc.update(schema_version=2)),
    ),
    Case(
        "gate-results-no-systems",
        GATE,
        code="E521",
        says=("{results}", "systems"),
        setup=edit_json("{results}", lambda doc: doc.update(systems={})),
    ),
    Case(
        "gate-results-correct-wrong-length",
        GATE,
        code="E521",
        says=("{results}", "correct"),
        setup=edit_json("{results}", lambda doc: doc["systems"]["file"].update(correct=[1])),
    ),
    Case(
        "gate-results-an-array",
        GATE,
        code="E521",
        says=("{results}",),
        setup=write("{results}", "[1, 2, 3]"),
    ),
    Case("gate-unknown-system", GATE + " --system nosuch", code="E531", says=("`nosuch`",)),
    Case(
        "gate-no-rules",
        GATE,
        code="E530",
        says=("{task}",),
        setup=edit("{task}", "[gate]\nmin_accuracy = 0.3\n", ""),
    ),
    Case(
        "gate-rule-percentage",
        GATE,
        code="E004",
        says=("gate.min_accuracy", "90"),
        setup=edit("{task}", "min_accuracy = 0.3", "min_accuracy = 90"),
    ),
    Case(
        "gate-rule-attack-success-percentage",
        GATE,
        code="E004",
        says=("gate.max_attack_success_rate", "5"),
        setup=append("{task}", "max_attack_success_rate = 5\n"),
    ),
    Case(
        "gate-rule-guard-false-positives-negative",
        GATE,
        code="E004",
        says=("gate.max_guard_false_positive_rate",),
        setup=append("{task}", "max_guard_false_positive_rate = -0.01\n"),
    ),
    Case(
        "gate-redteam-not-measured-fails",
        GATE,
        exit=1,
        says=("not measured", "--redteam"),
        setup=append("{task}", "max_attack_success_rate = 0.05\n"),
    ),
    Case(
        "gate-results-redteam-malformed",
        GATE,
        code="E931",
        says=("{results}", "redteam"),
        setup=lambda ws: (
            append("{task}", "max_attack_success_rate = 0.05\n")(ws),
            edit_json("{results}", lambda doc: doc["systems"]["file"].update(redteam=[0.1]))(ws),
        ),
    ),
    Case(
        "gate-rule-coverage-malformed",
        GATE,
        code="E004",
        says=("gate.min_coverage_at_precision",),
        setup=append("{task}", "min_coverage_at_precision = 0.9\n"),
    ),
    Case(
        "gate-rule-regression-not-bool",
        GATE + " --baseline {results}",
        code="E004",
        says=("gate.no_significant_regression",),
        setup=append("{task}", 'no_significant_regression = "yes"\n'),
    ),
    Case(
        "gate-baseline-other-data",
        GATE + " --baseline {root}/old.json",
        code="E532",
        says=("{root}/old.json",),
        setup=chain(
            append("{task}", "no_significant_regression = true\n"),
            copy("{results}", "{root}/old.json"),
            edit_json("{root}/old.json", lambda doc: doc["data"].update(fingerprint="0" * 64)),
        ),
    ),
    Case(
        "gate-baseline-missing",
        GATE + " --baseline {root}/nowhere.json",
        code="E520",
        says=("{root}/nowhere.json",),
        setup=append("{task}", "no_significant_regression = true\n"),
    ),
    Case(
        "gate-labels-differ",
        GATE,
        code="E533",
        says=("{results}",),
        setup=RENAMED,
    ),
    Case(
        "gate-kind-differs",
        GATE,
        code="E538",
        says=("{results}",),
        setup=edit_json("{results}", lambda doc: doc["task"].update(kind="multilabel")),
    ),
]
CASES += task_path_cases("gate", GATE)
CASES += task_error_cases(
    "gate", GATE, ["toml-syntax", "gate-unknown-rule", "unknown-key", "score-tolerance"]
)

# --- train ----------------------------------------------------------------------------------
NOT_FITTED = ("fitting on",)  # train's log line before the fit: refused before it
CASES += [
    Case("train-ok", TRAIN, exit=0, says=("wrote",), outputs=("{out}",)),
    Case(
        "train-ok-csv",
        TRAIN.replace("{data}", "{data_csv}"),
        exit=0,
        outputs=("{out}",),
    ),
    Case(
        "train-ok-from-store",
        "train --task {task} --from-store --out {out}",
        exit=0,
        outputs=("{out}",),
    ),
    Case(
        "train-ok-from-store-llm-labels",
        "train --task {task} --from-store --labels llm --min-llm-confidence 0.5 --out {out}",
        exit=0,
        outputs=("{out}",),
    ),
    Case(
        "train-seed-negative", TRAIN + " --seed -1", code="E708", says=("--seed", "-1"), defect="8"
    ),
    Case("train-holdout-zero", TRAIN + " --holdout 0", code="E708", says=("--holdout",)),
    Case("train-holdout-large", TRAIN + " --holdout 0.9", code="E708", says=("--holdout", "0.9")),
    Case("train-holdout-text", TRAIN + " --holdout half", says=("--holdout",)),
    Case(
        "train-min-per-label-negative",
        TRAIN + " --min-per-label -1",
        code="E708",
        says=("--min-per-label",),
    ),
    Case(
        "train-min-llm-confidence-above-one",
        TRAIN + " --min-llm-confidence 2",
        code="E708",
        says=("--min-llm-confidence",),
    ),
    Case("train-c-zero", TRAIN + " --c 0", code="E708", says=("--c",)),
    Case(
        "train-word-ngrams-text",
        TRAIN + " --word-ngrams many",
        code="E708",
        says=("--word-ngrams", "many"),
    ),
    Case(
        "train-word-ngrams-reversed",
        TRAIN + " --word-ngrams 3-1",
        code="E708",
        says=("--word-ngrams",),
    ),
    Case(
        "train-no-ngrams-at-all",
        TRAIN + " --word-ngrams none --char-ngrams none",
        code="E708",
        says=("--word-ngrams",),
    ),
    Case("train-recipe-unknown", TRAIN + " --recipe forest", code="E701", says=("`forest`",)),
    Case(
        "train-llm-embed-remote-llm",
        TRAIN + " --recipe llm-embed",
        code="E753",
        says=("llm-embed", "openai:"),
        setup=edit("{task}", '"smollm2-135m"', '"openai:http://127.0.0.1:9/v1#m"'),
    ),
    Case("train-quantize-linear", TRAIN + " --quantize int8", code="E709", says=("int8",)),
    Case("train-epochs-linear", TRAIN + " --epochs 2", code="E746", says=("--epochs",)),
    Case("train-threads-zero", TRAIN + " --threads 0", says=("--threads",)),
    Case(
        "train-data-and-from-store",
        TRAIN + " --from-store",
        code="E707",
        says=("--data", "--from-store"),
    ),
    Case(
        "train-neither-data-nor-store",
        "train --task {task} --out {out}",
        code="E707",
        says=("--data", "--from-store"),
    ),
    Case(
        "train-labels-policy-unknown",
        "train --task {task} --from-store --labels robots --out {out}",
        code="E403",
        says=("robots",),
    ),
    Case(
        "train-min-per-label-too-high",
        TRAIN + " --min-per-label 100",
        code="E704",
        says=("100",),
    ),
    Case(
        "train-one-label-only",
        "train --task {task} --data {root}/one.jsonl --out {out}",
        code="E705",
        says=("{root}/one.jsonl", "'positive'"),
        setup=rows(
            "{root}/one.jsonl",
            *[{"id": str(i), "text": f"Lovely thing {i}.", "label": "positive"} for i in range(8)],
        ),
    ),
    Case(
        "train-from-store-no-human-labels",
        "train --task {task} --from-store --labels human --out {out}",
        code="E706",
        says=("{store}",),
    ),
    Case(
        "train-from-store-no-store",
        "train --task {task} --from-store --out {out}",
        code=("E204", "E706"),
        says=("{store}",),
        setup=remove("{store}"),
        defect="17",
    ),
    Case(
        "train-from-store-label-renamed",
        "train --task {task} --from-store --out {out}",
        code="E206",
        says=("positive", "pleased"),
        setup=RENAMED,
        defect="5",
    ),
    Case(
        "train-from-store-second-task",
        "train --task {taskdir}/other.toml --from-store --out {out}",
        code="E205",
        says=("{store}", "another-task"),
        setup=SECOND_TASK,
        defect="5",
    ),
    Case(
        "train-out-exists-model",
        TRAIN.replace("--out {out}", "--out {model}"),
        code="E711",
        says=("{model}",),
    ),
    Case(
        "train-out-is-a-file",
        TRAIN.replace("--out {out}", "--out {test}"),
        code=("E711", "E123"),
        says=("{test}",),
        not_says=NOT_FITTED,
        defect="7",
    ),
    Case(
        "train-out-is-the-store",
        TRAIN.replace("--out {out}", "--out {store}"),
        code=("E711", "E120", "E123"),
        says=("{store}",),
        not_says=NOT_FITTED,
        defect="1",
    ),
    Case(
        "train-out-is-the-task",
        TRAIN.replace("--out {out}", "--out {task}"),
        code=("E711", "E120", "E123"),
        says=("{task}",),
        not_says=NOT_FITTED,
        defect="1",
    ),
    Case(
        "train-out-is-the-data",
        TRAIN.replace("--out {out}", "--out {data}"),
        code=("E711", "E120", "E123"),
        says=("{data}",),
        not_says=NOT_FITTED,
        defect="1",
    ),
    Case(
        "train-out-under-a-file",
        TRAIN.replace("--out {out}", "--out {data}/model"),
        code=FILE_IN_PATH_CODES,
        says=("{data}",),
        not_says=NOT_FITTED,
        defect="7",
    ),
    Case(
        "train-out-read-only",
        TRAIN.replace("--out {out}", "--out " + RO + "/model"),
        code=FS_WRITE_CODES,
        says=("--out", RO),
        not_says=NOT_FITTED,
        setup=MAKE_RO,
        run="mounts",
        prepare=PREPARE_RO,
        defect="7",
    ),
    Case(
        "train-out-disk-full",
        TRAIN.replace("--out {out}", "--out " + FULL + "/model"),
        code=FULL_CODES,
        says=(FULL,),
        not_says=NOT_FITTED,
        setup=MAKE_FULL,
        run="mounts",
        prepare=PREPARE_FULL,
        defect="7",
    ),
    Case(
        "train-killed-then-rerun-cleans-temporary-folder",
        TRAIN,
        exit=0,
        outputs=("{out}",),
        run="fault",
        fault=kill_train_then_rerun,
        defect="16",
        slow=True,
    ),
    Case(
        "train-interrupted",
        TRAIN,
        exit=130,
        says=("interrupted",),
        not_says=("every committed batch",),
        run="fault",
        fault=interrupt_train,
        defect="16",
        slow=True,
    ),
]
CASES += task_path_cases("train", TRAIN)
CASES += task_error_cases(
    "train", TRAIN, ["toml-syntax", "labels-empty", "one-label", "input-text-empty", "kind-unknown"]
)
CASES += bad_data_cases(
    "train",
    "train --task {task} --data {bad} --out {out}",
    [
        "invalid-json-line",
        "text-number",
        "duplicate-id",
        "unknown-label",
        "label-list",
        "bad-utf8",
        "blank-lines",
        "csv-no-text-column",
        "unsupported-suffix",
    ],
    not_says=("--skip-invalid",),
)
CASES += [
    Case(
        "train-data-without-labels",
        "train --task {task} --data {texts} --out {out}",
        code="E105",
        says=("{texts}:1", "`label`"),
        not_says=("--skip-invalid",),
        defect="9",
    ),
]
CASES += missing_and_odd_paths(
    "train", "train --task {task} --data {path} --out {out}", "E101", "E108"
)

# --- predict --------------------------------------------------------------------------------
CASES += [
    Case("predict-ok", PREDICT, exit=0, outputs=("{out}",), check=predictions_written(40)),
    Case(
        "predict-ok-with-task",
        PREDICT + " --task {task}",
        exit=0,
        outputs=("{out}",),
    ),
    Case(
        "predict-ok-unknown-label-field-ignored",
        "predict --model {model} --input {root}/labelled.jsonl --out {out}/p.jsonl",
        exit=0,
        outputs=("{out}",),
        setup=rows(
            "{root}/labelled.jsonl",
            {"id": "a", "text": "Lovely food.", "label": "happy"},
            {"id": "b", "text": "Awful food.", "label": "sad"},
        ),
        check=predictions_written(2),
        defect="13",
    ),
    Case(
        "predict-ok-unknown-label-with-task",
        "predict --model {model} --input {root}/labelled.jsonl --out {out}/p.jsonl --task {task}",
        exit=0,
        outputs=("{out}",),
        setup=rows(
            "{root}/labelled.jsonl",
            {"id": "a", "text": "Lovely food.", "label": "happy"},
        ),
        check=predictions_written(1),
        defect="13",
    ),
    Case(
        "predict-ok-skip-invalid",
        "predict --model {model} --input {root}/mixed.jsonl --out {out}/p.jsonl --skip-invalid",
        exit=0,
        outputs=("{out}",),
        setup=write("{root}/mixed.jsonl", '{"id": "a", "text": "Nice."}\n{broken\n'),
        check=predictions_written(1),
    ),
    Case(
        "predict-ok-bom-input",
        "predict --model {model} --input {root}/bom.jsonl --out {out}/p.jsonl",
        exit=0,
        outputs=("{out}",),
        setup=write_bytes("{root}/bom.jsonl", b'\xef\xbb\xbf{"id": "a", "text": "Nice."}\n'),
    ),
    Case(
        "predict-help-shows-input-table",
        "predict --help",
        exit=0,
        says=("[input]",),
        defect="15",
    ),
    Case(
        "predict-out-is-the-input-jsonl",
        "predict --model {model} --input {texts} --out {texts}",
        code="E120",
        says=("--out", "{texts}"),
        defect="2",
    ),
    Case(
        "predict-out-is-the-input-csv",
        "predict --model {model} --input {test_csv} --out {test_csv}",
        code="E120",
        says=("--out", "{test_csv}"),
        defect="2",
    ),
    Case(
        "predict-out-is-a-link-to-the-input",
        "predict --model {model} --input {texts} --out {root}/alias.jsonl",
        code="E120",
        says=("--out", "{root}/alias.jsonl"),
        setup=symlink("{root}/alias.jsonl", "{texts}"),
        defect="2",
    ),
    Case(
        "predict-out-is-the-input-relative-dots",
        "predict --model {model} --input {texts} --out {root}/data/../data/texts.jsonl",
        code="E120",
        says=("--out",),
        defect="2",
    ),
    Case(
        "predict-out-is-a-hard-link-to-the-input",
        "predict --model {model} --input {texts} --out {root}/hard.jsonl",
        code="E120",
        says=("--out", "{root}/hard.jsonl"),
        setup=lambda ws: os.link(ws["texts"], ws.root / "hard.jsonl"),
        defect="2",
    ),
    Case(
        "predict-out-inside-the-model",
        "predict --model {model} --input {texts} --out {model}/p.jsonl",
        code="E120",
        says=("--out", "{model}"),
        defect="2",
    ),
    Case(
        "predict-out-is-the-task",
        "predict --model {model} --input {texts} --out {task} --task {task}",
        code="E120",
        says=("--out", "{task}"),
        defect="2",
    ),
    Case(
        "predict-out-is-a-folder",
        "predict --model {model} --input {texts} --out {out}",
        code=FOLDER_CODES,
        says=("{out}",),
        setup=mkdir("{out}"),
        defect="7",
    ),
    Case(
        "predict-out-under-a-file",
        "predict --model {model} --input {texts} --out {data}/p.jsonl",
        code=FILE_IN_PATH_CODES,
        says=("{data}",),
        defect="7",
    ),
    Case(
        "predict-out-read-only",
        "predict --model {model} --input {texts} --out " + RO + "/p.jsonl",
        code=FS_WRITE_CODES,
        says=("--out", RO),
        setup=MAKE_RO,
        run="mounts",
        prepare=PREPARE_RO,
        defect="7",
    ),
    Case(
        "predict-out-disk-full",
        "predict --model {model} --input {texts} --out " + FULL + "/p.jsonl",
        code=FULL_CODES,
        says=(FULL,),
        setup=MAKE_FULL,
        run="mounts",
        prepare=PREPARE_FULL,
        defect="7",
    ),
    Case(
        "predict-out-disk-fills-during-write",
        "predict --model {model} --input {root}/many.jsonl --out " + FULL + "/p.jsonl",
        code=FULL_CODES,
        says=(FULL + "/p.jsonl",),
        setup=chain(MAKE_FULL, many_texts("{root}/many.jsonl", 4000)),
        run="mounts",
        prepare=full_disk(FULL, fill=False),
        defect="7",
    ),
    Case("predict-threads-zero", PREDICT + " --threads 0", says=("--threads",)),
    Case("predict-no-model", "predict --input {texts} --out {out}/p.jsonl", says=("--model",)),
    Case(
        "predict-model-missing",
        "predict --model {root}/nowhere --input {texts} --out {out}/p.jsonl",
        code="E720",
        says=("{root}/nowhere",),
    ),
    Case(
        "predict-model-is-a-file",
        "predict --model {data} --input {texts} --out {out}/p.jsonl",
        code="E727",
        says=("{data}",),
        not_says=("does not exist",),
        defect="10",
    ),
    Case(
        "predict-model-card-temperature-edited",
        PREDICT,
        code=("E721", "E725"),
        says=("{model}", "card.json"),
        setup=edit_json(CARD, set_temperature),
        defect="6",
    ),
    Case(
        "predict-model-card-labels-reordered",
        PREDICT,
        code=("E721", "E725"),
        says=("{model}", "card.json"),
        setup=edit_json(CARD, swap_card_labels),
        defect="6",
    ),
    Case(
        "predict-model-readme-edited",
        PREDICT,
        code=("E721", "E725"),
        says=("{model}", "README.md"),
        setup=append("{model}/README.md", "\nedited\n"),
        defect="6",
    ),
    Case(
        "predict-model-vocabulary-missing",
        PREDICT,
        code="E721",
        says=("{model}", "vocabulary.json"),
        setup=remove("{model}/vocabulary.json"),
    ),
    Case(
        "predict-model-format-version",
        PREDICT,
        code=("E722", "E725"),
        says=("{model}",),
        setup=edit_json(CARD, lambda card: card.update(format_version=99)),
    ),
    Case(
        "predict-model-labels-differ-from-task",
        PREDICT + " --task {task}",
        code="E723",
        says=("{model}", "pleased"),
        setup=RENAMED,
    ),
]
CASES += bad_data_cases(
    "predict",
    "predict --model {model} --input {bad} --out {out}/p.jsonl",
    [
        "invalid-json-line",
        "missing-text",
        "text-whitespace",
        "bad-utf8",
        "empty-file",
        "id-object",
        "json-invalid",
        "csv-no-text-column",
        "csv-ragged-row",
        "parquet-garbage",
        "unsupported-suffix",
    ],
)
CASES += missing_and_odd_paths(
    "predict", "predict --model {model} --input {path} --out {out}/p.jsonl", "E101", "E108"
)

# --- audit ----------------------------------------------------------------------------------
CASES += [
    Case("audit-ok", AUDIT, exit=0, outputs=("{out}",)),
    Case(
        "audit-ok-fix",
        AUDIT + " --fix {root}/clean.jsonl",
        exit=0,
        outputs=("{out}", "{root}/clean.jsonl"),
    ),
    Case(
        "audit-ok-csv-with-test",
        "audit --task {task} --data {data_csv} --test {test_csv} "
        "--checks duplicates,leakage,balance --out {out}",
        exit=0,
        outputs=("{out}",),
    ),
    Case(
        "audit-ok-llm-annotator",
        "audit --task {task} --data {data} --annotator llm --checks balance,disagreement "
        "--out {out}",
        exit=0,
        outputs=("{out}",),
        store_writes=True,
    ),
    Case(
        "audit-fix-is-the-task",
        AUDIT + " --fix {task}",
        code="E120",
        says=("--fix", "{task}"),
        defect="3",
    ),
    Case(
        "audit-fix-is-the-data",
        AUDIT + " --fix {data}",
        code=("E120", "E602"),
        says=("--fix", "{data}"),
        defect="3",
    ),
    Case(
        "audit-fix-is-the-test",
        AUDIT + " --test {test} --fix {test}",
        code=("E120", "E602"),
        says=("--fix", "{test}"),
        defect="3",
    ),
    Case(
        "audit-fix-is-the-store",
        AUDIT + " --fix {store}",
        code="E120",
        says=("--fix", "{store}"),
        defect="3",
    ),
    Case(
        "audit-fix-is-audit-json",
        AUDIT + " --fix {out}/audit.json",
        code="E121",
        says=("--fix", "--out", "{out}/audit.json"),
        defect="3",
    ),
    Case(
        "audit-fix-is-the-fix-log",
        AUDIT + " --fix {out}/fix-log.jsonl",
        code="E121",
        says=("--fix", "{out}/fix-log.jsonl"),
        defect="3",
    ),
    Case(
        "audit-fix-is-audit-html",
        AUDIT + " --fix {out}/audit.html",
        code="E121",
        says=("--fix", "{out}/audit.html"),
        defect="3",
    ),
    Case(
        "audit-fix-is-a-link-to-the-data",
        AUDIT + " --fix {root}/alias.jsonl",
        code=("E120", "E602"),
        says=("--fix", "{root}/alias.jsonl"),
        setup=symlink("{root}/alias.jsonl", "{data}"),
        defect="3",
    ),
    Case(
        "audit-fix-is-a-folder",
        AUDIT + " --fix {root}/data",
        code=FOLDER_CODES,
        says=("--fix", "{root}/data"),
        defect="7",
    ),
    Case(
        "audit-out-is-a-file",
        AUDIT.replace("--out {out}", "--out {test}"),
        code=("E123", "E114"),
        says=("--out", "{test}"),
        defect="7",
    ),
    Case(
        "audit-out-read-only",
        AUDIT.replace("--out {out}", "--out " + RO + "/audit"),
        code=FS_WRITE_CODES,
        says=("--out", RO),
        setup=MAKE_RO,
        run="mounts",
        prepare=PREPARE_RO,
        defect="7",
    ),
    Case(
        "audit-fix-read-only",
        AUDIT + " --fix " + RO + "/clean.jsonl",
        code=FS_WRITE_CODES,
        says=("--fix", RO),
        setup=MAKE_RO,
        run="mounts",
        prepare=PREPARE_RO,
        defect="7",
    ),
    Case(
        "audit-out-disk-full",
        AUDIT.replace("--out {out}", "--out " + FULL + "/audit"),
        code=FULL_CODES,
        says=(FULL,),
        setup=MAKE_FULL,
        run="mounts",
        prepare=PREPARE_FULL,
        defect="7",
    ),
    Case("audit-test-is-the-data", AUDIT + " --test {data}", code="E603", says=("{data}",)),
    Case(
        "audit-checks-unknown",
        AUDIT.replace("duplicates,text", "spelling"),
        code="E601",
        says=("`spelling`",),
    ),
    Case("audit-checks-empty", AUDIT.replace("duplicates,text", ","), code="E601"),
    Case(
        "audit-near-threshold-zero",
        AUDIT + " --near-threshold 0",
        code="E605",
        says=("--near-threshold",),
    ),
    Case(
        "audit-pii-threshold-above-one",
        AUDIT + " --pii-threshold 2",
        code="E605",
        says=("--pii-threshold",),
    ),
    Case("audit-folds-one", AUDIT + " --folds 1", code="E605", says=("--folds",)),
    Case("audit-folds-text", AUDIT + " --folds many", says=("--folds",)),
    Case(
        "audit-drop-below-five",
        "audit --task {task} --data {data} --checks label_issues --fix {root}/clean.jsonl "
        "--drop-label-issues-below 5 --out {out}",
        code="E605",
        says=("--drop-label-issues-below", "5"),
        not_says=("True",),
        defect="12",
    ),
    Case(
        "audit-drop-below-negative",
        "audit --task {task} --data {data} --checks label_issues --fix {root}/clean.jsonl "
        "--drop-label-issues-below -1 --out {out}",
        code="E605",
        says=("--drop-label-issues-below", "-1"),
        not_says=("True",),
        defect="12",
    ),
    Case(
        "audit-drop-below-without-fix",
        AUDIT + " --drop-label-issues-below 0.5",
        code="E605",
        says=("--drop-label-issues-below", "--fix"),
    ),
    Case(
        "audit-redact-without-fix",
        AUDIT + " --redact-pii",
        code="E605",
        says=("--redact-pii",),
    ),
    Case(
        "audit-annotator-human-none",
        AUDIT + " --annotator human",
        code="E604",
        says=("{store}", "human"),
    ),
    Case(
        "audit-annotator-llm-label-renamed",
        AUDIT.replace("{data}", "{texts}") + " --annotator llm",
        code="E206",
        says=("positive", "pleased"),
        setup=RENAMED,
        defect="5",
    ),
]
CASES += task_path_cases("audit", AUDIT)
CASES += task_error_cases("audit", AUDIT, ["toml-syntax", "kind-unknown", "input-text-empty"])
# The audit reads every row leniently (it reports empty texts itself), so a file whose only row
# is invalid is E109, which names the row and the reason as E105 does.
CASES += bad_data_cases(
    "audit",
    "audit --task {task} --data {bad} --checks duplicates,text --out {out}",
    [
        "invalid-json-line",
        "missing-text",
        "duplicate-id",
        "unknown-label",
        "bad-utf8",
        "empty-file",
        "json-not-array",
        "csv-no-text-column",
        "parquet-garbage",
        "unsupported-suffix",
    ],
    codes={"missing-text": "E109"},
)
CASES += missing_and_odd_paths(
    "audit",
    "audit --task {task} --data {path} --checks duplicates,text --out {out}",
    "E101",
    "E108",
)

# --- review ---------------------------------------------------------------------------------
# Every refusal comes before the server listens (a case that served would wait for Ctrl-C).
REVIEW = "review --task {task} --port 0"
CASES += [
    Case("review-help", "review --help", exit=0, says=("Usage", "--overlap", "--stats")),
    Case("review-stats-ok", "review --task {task} --stats", exit=0, says=("reviewed",)),
    Case(
        "review-stats-json-ok", "review --task {task} --stats --json", exit=0, says=('"reviewers"',)
    ),
    Case("review-queue-unknown", REVIEW + " --queue bogus", code="E860", says=("bogus", "auto")),
    Case("review-overlap-above-one", REVIEW + " --overlap 1.5", code="E867", says=("--overlap",)),
    Case("review-overlap-text", REVIEW + " --overlap half", says=("--overlap",)),
    Case(
        "review-port-out-of-range",
        "review --task {task} --port 70000",
        code="E867",
        says=("--port",),
    ),
    Case(
        "review-host-without-token", REVIEW + " --host 0.0.0.0", code="E863", says=("--token-file",)
    ),
    Case(
        "review-token-file-missing",
        REVIEW + " --host 0.0.0.0 --token-file {root}/token.txt",
        code="E864",
        says=("{root}/token.txt",),
    ),
    Case(
        "review-token-file-short",
        REVIEW + " --token-file {root}/token.txt",
        code="E864",
        says=("{root}/token.txt", "16"),
        setup=write("{root}/token.txt", "short\n"),
    ),
    Case(
        "review-token-file-is-a-folder",
        REVIEW + " --token-file {taskdir}",
        code="E864",
        says=("{taskdir}", "folder"),
    ),
    Case("review-annotator-blank", REVIEW + " --annotator ' '", code="E868", says=("--annotator",)),
    Case(
        "review-stats-with-queue",
        "review --task {task} --stats --queue audit",
        code="E869",
        says=("--queue", "--stats"),
    ),
    Case("review-json-without-stats", REVIEW + " --json", code="E869", says=("--json",)),
    Case(
        "review-audit-queue-empty",
        REVIEW + " --queue audit",
        code="E862",
        says=("audit", "{store}"),
    ),
    Case(
        "review-abstained-queue-empty", REVIEW + " --queue abstained", code="E862", says=("serve",)
    ),
    Case(
        "review-no-store",
        REVIEW,
        code="E861",
        says=("{store}", "--input"),
        setup=remove("{store}"),
    ),
    Case(
        "review-stats-no-store",
        "review --task {task} --stats",
        code="E204",
        says=("{store}",),
        setup=remove("{store}"),
    ),
    Case(
        "review-input-changed-text",
        REVIEW + " --input {root}/changed.jsonl",
        code="E207",
        says=("{store}",),
        setup=changed_text_for_stored_id,
    ),
    Case(
        "review-store-renamed-label",
        "review --task {task} --stats",
        code="E206",
        says=("positive", "pleased"),
        setup=rename_label,
    ),
]
CASES += task_path_cases("review", "review --task {task} --stats")
CASES += bad_data_cases(
    "review",
    REVIEW + " --input {bad}",
    ["invalid-json-line", "missing-text", "bad-utf8", "empty-file", "unsupported-suffix"],
)
CASES += missing_and_odd_paths("review", REVIEW + " --input {path}", "E101", "E108")

# --- serve ----------------------------------------------------------------------------------
# Every case must fail before the server binds its port: a case that started would serve forever.
SERVE = "serve --task {task} --system m=model:{model} --port 0"
CASES += [
    Case("serve-help", "serve --help", exit=0, says=("Usage", "--token-file")),
    Case("serve-no-system", "serve --task {task} --port 0", code="E801", says=("--system",)),
    Case(
        "serve-system-preds-refused",
        SERVE + " --system p=preds:{preds}",
        code="E800",
        says=("p=preds:{preds}",),
    ),
    Case(
        "serve-system-no-name",
        "serve --task {task} --system model:{model} --port 0",
        code="E502",
        says=("model:{model}",),
    ),
    Case("serve-system-twice", SERVE + " --system m=model:{model}", code="E517", says=("`m`",)),
    Case(
        "serve-system-unknown-source",
        "serve --task {task} --system x=magic:thing --port 0",
        code="E502",
        says=("x=magic:thing", "magic"),
    ),
    Case(
        "serve-model-missing",
        "serve --task {task} --system m=model:{root}/nowhere --port 0",
        code="E720",
        says=("{root}/nowhere",),
    ),
    Case(
        "serve-model-no-manifest",
        SERVE,
        code="E721",
        says=("{model}", "manifest.json"),
        setup=remove("{model}/manifest.json"),
    ),
    Case(
        "serve-open-host-without-token",
        SERVE + " --host 0.0.0.0",
        code="E802",
        says=("0.0.0.0", "--insecure", "--token-file"),
    ),
    Case(
        "serve-token-file-missing",
        SERVE + " --token-file {root}/token.txt",
        code="E803",
        says=("{root}/token.txt",),
    ),
    Case(
        "serve-token-file-is-a-folder",
        SERVE + " --token-file {root}/data",
        code="E804",
        says=("{root}/data",),
    ),
    Case(
        "serve-token-file-empty",
        SERVE + " --token-file {root}/token.txt",
        code="E805",
        says=("{root}/token.txt",),
        setup=write("{root}/token.txt", "  \n"),
    ),
    Case(
        "serve-token-file-with-a-space",
        SERVE + " --token-file {root}/token.txt",
        code="E808",
        says=("{root}/token.txt", "spaces"),
        setup=write("{root}/token.txt", "two words\n"),
    ),
    Case(
        "serve-token-variable-empty",
        SERVE,
        code="E805",
        says=("STILLHOUSE_TOKEN",),
        env={"STILLHOUSE_TOKEN": " "},
    ),
    Case("serve-workers-zero", SERVE + " --workers 0", code="E807", says=("--workers",)),
    Case(
        "serve-threads-beyond-cores",
        SERVE + " --threads 4096",
        code="E807",
        says=("--threads", "workers × threads ≤ cores"),
    ),
    Case("serve-port-too-big", SERVE + " --port 70000", code="E807", says=("--port", "70000")),
    Case("serve-max-batch-zero", SERVE + " --max-batch 0", code="E807", says=("--max-batch",)),
    Case(
        "serve-max-wait-negative",
        SERVE + " --max-wait-ms -1",
        code="E807",
        says=("--max-wait-ms",),
    ),
    Case(
        "serve-log-policy-unknown",
        SERVE + " --log-predictions most",
        code="E830",
        says=("most",),
    ),
    Case(
        "serve-log-sample-above-one",
        SERVE + " --log-predictions sample:2",
        code="E830",
        says=("sample:2",),
    ),
    Case(
        "serve-section-key-unknown",
        "serve --task {task} --port 0",
        code="E003",
        says=("{task}", "max_bach"),
        setup=append("{task}", "\n[serve]\nmax_bach = 8\n"),
    ),
    Case(
        "serve-section-system-not-a-spec",
        "serve --task {task} --port 0",
        code="E003",
        says=("{task}", "fast"),
        setup=append("{task}", '\n[serve.systems]\nfast = "linear"\n'),
    ),
    Case(
        "serve-section-model-missing",
        "serve --task {task} --port 0",
        code="E720",
        says=("{taskdir}/models/none",),
        setup=append("{task}", '\n[serve.systems]\nfast = "model:models/none"\n'),
    ),
    Case(
        "serve-section-preds-refused",
        "serve --task {task} --port 0",
        code="E800",
        says=("preds:",),
        setup=append("{task}", '\n[serve.systems]\nfile = "preds:../preds/test.jsonl"\n'),
    ),
]
CASES += task_path_cases("serve", SERVE)
CASES += task_error_cases("serve", SERVE, ["toml-syntax", "kind-unknown"])

# --- monitor (and the gate rules that read monitor.json) -----------------------------------------
MONITOR = "monitor --task {task} --baseline {test} --baseline {preds} --out {out}"
MONITOR_JSON = "{root}/reports/monitor/monitor.json"
MONITOR_RULES = "max_label_psi = 0.25\nmax_abstention_rate = 0.5\nmin_estimated_accuracy = 0.1\n"
# the logged traffic's first time: 2026-11-01T00:00Z, one prediction a minute
LOGGED_FROM = 1_793_491_200.0


def logged(*systems: str, texts: bool = True) -> Setup:
    """The template model's answers on {test}, logged through the serve app's PredictionLog as
    each of ``systems`` (default ``linear``), as a server would."""

    def setup(ws: Workspace) -> None:
        from stillhouse.serve.prediction_log import LoggedPrediction, PredictionLog
        from stillhouse.task import load_task
        from stillhouse.train import load_model

        task, model = load_task(ws["task"]), load_model(ws["model"])
        rows = [json.loads(line) for line in ws["test"].read_text(encoding="utf-8").splitlines()]
        probs = model.probabilities([row["text"] for row in rows])
        with PredictionLog(task, log_texts=texts) as log:
            for system in systems or ("linear",):
                log.record(
                    [
                        LoggedPrediction(
                            LOGGED_FROM + 60 * i, system, "v1", row["text"],
                            model.labels[int(p.argmax())], None, float(p.max()), None, False,
                            1.0,
                        )
                        for i, (row, p) in enumerate(zip(rows, probs, strict=True))
                    ]
                )  # fmt: skip

    return setup


def monitored(baseline: bool = True) -> Setup:
    """logged(), then `stillhouse monitor`'s report of it in {root}/reports/monitor/."""

    def setup(ws: Workspace) -> None:
        from stillhouse.monitor.run import run_monitor, write_monitor_outputs
        from stillhouse.task import load_task

        logged()(ws)
        sources = [ws["test"], ws["preds"]] if baseline else []
        document = run_monitor(load_task(ws["task"]), baselines=sources)
        write_monitor_outputs(document, ws.path(MONITOR_JSON).parent)

    return setup


CASES += [
    Case(
        "monitor-ok",
        MONITOR,
        exit=0,
        says=("wrote", "label PSI"),
        outputs=("{out}",),
        setup=logged(),
    ),
    Case(
        "monitor-ok-no-baseline-json",
        "monitor --task {task} --out {out} --json",
        exit=0,
        says=('"schema": "stillhouse.monitor"', "no --baseline given"),
        outputs=("{out}",),
        setup=logged(texts=False),
    ),
    Case(
        "monitor-ok-results-baseline",
        "monitor --task {task} --baseline {results} --out {out} --system linear",
        exit=0,
        outputs=("{out}",),
        setup=logged(),
    ),
    Case(
        "monitor-ok-out-beside-the-task",
        MONITOR.replace("{out}", "{taskdir}"),
        exit=0,
        outputs=("{taskdir}/monitor.json", "{taskdir}/monitor.html"),
        setup=logged(),
    ),
    Case("monitor-nothing-logged", MONITOR, code="E833", says=("{store}", "log policy")),
    Case(
        "monitor-no-store",
        MONITOR,
        code="E204",
        says=("{store}",),
        setup=chain(*(remove(f"{{taskdir}}/{name}") for name in ("stillhouse.db",))),
    ),
    Case(
        "monitor-since-not-a-date",
        MONITOR + " --since 2026-02-30",
        code="E831",
        says=("--since", "2026-02-30"),
        setup=logged(),
    ),
    Case(
        "monitor-until-words",
        MONITOR + " --until tomorrow",
        code="E831",
        says=("--until", "tomorrow"),
    ),
    Case(
        "monitor-until-before-since",
        MONITOR + " --since 2026-11-02 --until 2026-11-01",
        code="E832",
        says=("2026-11-01", "2026-11-02"),
    ),
    Case(
        "monitor-since-after-everything",
        MONITOR + " --since 2026-12-01T00:00",
        code="E833",
        says=("since 2026-12-01T00:00", "it holds 40"),
        setup=logged(),
    ),
    Case(
        "monitor-unknown-system",
        MONITOR + " --system nosuch",
        code="E834",
        says=("`nosuch`", "`linear` (40)"),
        setup=logged(),
    ),
    Case(
        "monitor-two-systems-none-chosen",
        MONITOR,
        code="E835",
        says=("`fast` (40)", "`slow` (40)", "--system"),
        setup=logged("fast", "slow"),
    ),
    Case(
        "monitor-first-stage-unknown",
        MONITOR + " --first-stage llm",
        code="E840",
        says=("`llm`",),
        setup=logged(),
    ),
    Case(
        "monitor-baseline-missing",
        "monitor --task {task} --baseline {root}/nowhere.jsonl --out {out}",
        code="E838",
        says=("--baseline {root}/nowhere.jsonl",),
        setup=logged(),
    ),
    Case(
        "monitor-baseline-is-a-folder",
        "monitor --task {task} --baseline {root}/data --out {out}",
        code="E848",
        says=("{root}/data", "folder"),
        not_says=("does not exist",),
        setup=logged(),
    ),
    Case(
        "monitor-baseline-is-dev-null",
        "monitor --task {task} --baseline /dev/null --out {out}",
        code="E848",
        says=("/dev/null",),
        not_says=("does not exist",),
        setup=logged(),
    ),
    Case(
        "monitor-baseline-is-the-task",
        "monitor --task {task} --baseline {task} --out {out}",
        code="E836",
        says=("{task}", "`.toml`"),
        setup=logged(),
    ),
    Case(
        "monitor-baseline-texts-without-labels",
        "monitor --task {task} --baseline {texts} --out {out}",
        code="E105",
        says=("{texts}",),
        setup=logged(),
    ),
    Case(
        "monitor-baseline-rows-of-nothing",
        "monitor --task {task} --baseline {root}/odd.jsonl --out {out}",
        code="E836",
        says=("{root}/odd.jsonl", "neither"),
        setup=chain(logged(), rows("{root}/odd.jsonl", {"words": "hello"})),
    ),
    Case(
        "monitor-baseline-two-test-sets",
        "monitor --task {task} --baseline {test} --baseline {test_csv} --out {out}",
        code="E837",
        says=("{test}", "{test_csv}", "test sets"),
        setup=logged(),
    ),
    Case(
        "monitor-baseline-preds-of-other-texts",
        "monitor --task {task} --baseline {data} --baseline {preds} --out {out}",
        code=("E511", "E512"),
        says=("{preds}", "the test set {data}"),
        setup=logged(),
    ),
    Case(
        "monitor-baseline-results-of-another-task",
        "monitor --task {task} --baseline {results} --out {out}",
        code="E839",
        says=("{results}", "`another`"),
        setup=chain(
            logged(), edit_json("{results}", lambda doc: doc["task"].update(name="another"))
        ),
    ),
    Case(
        "monitor-store-newer-version",
        MONITOR,
        code="E203",
        says=("{store}",),
        setup=chain(logged(), sql("UPDATE meta SET value = '3' WHERE key = 'schema_version'")),
    ),
    Case(
        "monitor-store-of-another-task",
        MONITOR,
        code="E205",
        says=("{store}",),
        setup=chain(logged(), sql("UPDATE meta SET value = 'another' WHERE key = 'task_name'")),
    ),
    Case(
        "monitor-out-is-the-task",
        "monitor --task {task} --out {task}",
        code="E120",
        says=("{task}",),
        setup=logged(),
    ),
    Case(
        "monitor-out-is-the-store",
        "monitor --task {task} --out {store}",
        code=("E120", "E121"),
        says=("{store}",),
        setup=logged(),
    ),
    Case(
        "monitor-out-is-the-baseline",
        MONITOR.replace("--out {out}", "--out {test}"),
        code=("E120", "E121"),
        says=("{test}",),
        setup=logged(),
    ),
    Case("monitor-help", "monitor --help", exit=0, says=("--baseline", "--since")),
]
CASES += task_path_cases("monitor", MONITOR)
CASES += task_error_cases("monitor", MONITOR, ["toml-syntax", "unknown-key"])

GATE_MONITOR = "gate --task {task} --monitor " + MONITOR_JSON
CASES += [
    Case(
        "gate-monitor-ok",
        GATE_MONITOR,
        exit=0,
        says=("max_label_psi", "PASS", "not checked: min_accuracy"),
        setup=chain(monitored(), append("{task}", MONITOR_RULES)),
    ),
    Case(
        "gate-monitor-and-results-ok",
        GATE_MONITOR + " --results {results} --json",
        exit=0,
        says=('"passed": true', "min_estimated_accuracy", "min_accuracy"),
        setup=chain(monitored(), append("{task}", MONITOR_RULES)),
    ),
    Case(
        "gate-monitor-fails",
        GATE_MONITOR,
        exit=1,
        says=("min_estimated_accuracy", "FAIL", "estimated accuracy of `linear`"),
        setup=chain(monitored(), append("{task}", "min_estimated_accuracy = 0.99\n")),
    ),
    Case(
        "gate-monitor-rule-not-measured",
        GATE_MONITOR,
        exit=1,
        says=("not measured in monitor.json", "--baseline"),
        setup=chain(monitored(baseline=False), append("{task}", "max_label_psi = 0.25\n")),
    ),
    Case(
        "gate-monitor-rules-without-monitor",
        GATE,
        exit=0,
        says=("not checked: max_label_psi", "--monitor"),
        setup=append("{task}", "max_label_psi = 0.25\n"),
    ),
    Case(
        "gate-monitor-no-rule-reads-it",
        GATE_MONITOR,
        code="E847",
        says=("{task}", "monitor.json", "max_label_psi"),
        setup=monitored(),
    ),
    Case(
        "gate-monitor-missing",
        "gate --task {task} --monitor {root}/nowhere.json",
        code="E841",
        says=("{root}/nowhere.json",),
        setup=append("{task}", MONITOR_RULES),
    ),
    Case(
        "gate-monitor-is-a-folder",
        "gate --task {task} --monitor {root}/reports",
        code="E842",
        says=("{root}/reports", "folder"),
        not_says=("does not exist",),
        setup=append("{task}", MONITOR_RULES),
    ),
    Case(
        "gate-monitor-is-results-json",
        "gate --task {task} --monitor {results}",
        code="E843",
        says=("{results}", "stillhouse.monitor"),
        setup=append("{task}", MONITOR_RULES),
    ),
    Case(
        "gate-monitor-newer-version",
        GATE_MONITOR,
        code="E844",
        says=(MONITOR_JSON,),
        setup=chain(
            monitored(),
            append("{task}", MONITOR_RULES),
            edit_json(MONITOR_JSON, lambda doc: doc.update(schema_version=2)),
        ),
    ),
    Case(
        "gate-monitor-section-missing",
        GATE_MONITOR,
        code="E843",
        says=(MONITOR_JSON, "`abstention`"),
        setup=chain(
            monitored(),
            append("{task}", MONITOR_RULES),
            edit_json(
                MONITOR_JSON, lambda doc: {k: v for k, v in doc.items() if k != "abstention"}
            ),
        ),
    ),
    Case(
        "gate-monitor-of-another-task",
        GATE_MONITOR,
        code="E845",
        says=(MONITOR_JSON, "`another`"),
        setup=chain(
            monitored(),
            append("{task}", MONITOR_RULES),
            edit_json(MONITOR_JSON, lambda doc: doc["task"].update(name="another")),
        ),
    ),
    Case(
        "gate-monitor-unknown-system",
        GATE_MONITOR + " --system other",
        code="E531",
        says=("`other`",),
        setup=chain(monitored(), append("{task}", MONITOR_RULES)),
    ),
    Case(
        "gate-monitor-psi-negative",
        GATE_MONITOR,
        code="E004",
        says=("gate.max_label_psi", "-1"),
        setup=chain(monitored(), append("{task}", "max_label_psi = -1\n")),
    ),
    Case(
        "gate-monitor-abstention-percentage",
        GATE_MONITOR,
        code="E004",
        says=("gate.max_abstention_rate", "5"),
        setup=chain(monitored(), append("{task}", "max_abstention_rate = 5\n")),
    ),
    Case(
        "gate-monitor-baseline-without-results",
        GATE_MONITOR + " --baseline {results}",
        code="E515",
        says=("--baseline",),
        setup=chain(monitored(), append("{task}", MONITOR_RULES)),
    ),
]

# --- guard scan -------------------------------------------------------------------------------
GUARD_SCAN = "guard scan --input {texts} --out {out}/flags.jsonl"


def flags_written(count: int) -> Check:
    def check(ws: Workspace, outcome: Outcome) -> None:
        lines = (ws["out"] / "flags.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == count, f"{len(lines)} flags written, expected {count}"
        for line in lines:
            row = json.loads(line)
            assert set(row) == {"id", "injection", "score"} and 0 <= row["score"] <= 1, row

    return check


CASES += [
    Case("guard-scan-ok", GUARD_SCAN, exit=0, outputs=("{out}",), check=flags_written(40)),
    Case(
        "guard-scan-ok-with-task-and-threshold",
        GUARD_SCAN + " --task {task} --threshold 0.5",
        exit=0,
        outputs=("{out}",),
        check=flags_written(40),
    ),
    Case(
        "guard-scan-ok-with-the-encoder-detector",
        GUARD_SCAN + " --detector encoder-ngrams",
        exit=0,
        outputs=("{out}",),
        check=flags_written(40),
        says=("detector encoder-ngrams",),
    ),
    *task_error_cases("guard-scan", GUARD_SCAN + " --task {task}", ["guard-detector-unknown"]),
    Case(
        "guard-scan-unknown-detector",
        GUARD_SCAN + " --detector bert",
        code="E900",
        says=("--detector", "bert", "encoder-ngrams"),
    ),
    Case("guard-help", "guard --help", exit=0, says=("scan",)),
    Case("guard-scan-help", "guard scan --help", exit=0, says=("--threshold", "--input")),
    Case(
        "guard-scan-threshold-above-one",
        GUARD_SCAN + " --threshold 1.5",
        code="E900",
        says=("--threshold", "1.5"),
    ),
    Case(
        "guard-scan-threshold-negative",
        GUARD_SCAN + " --threshold -0.1",
        code="E900",
        says=("--threshold",),
    ),
    Case(
        "guard-scan-threshold-nan",
        GUARD_SCAN + " --threshold nan",
        code="E900",
        says=("--threshold", "nan"),
    ),
    Case(
        "guard-scan-threshold-not-a-number", GUARD_SCAN + " --threshold high", says=("--threshold",)
    ),
    Case("guard-scan-no-input", "guard scan --out {out}/flags.jsonl", says=("--input",)),
    Case("guard-scan-no-subcommand-name", "guard sacn --input {texts}", says=("sacn",)),
    Case(
        "guard-scan-out-is-the-input",
        "guard scan --input {texts} --out {texts}",
        code="E120",
        says=("--out", "{texts}"),
    ),
    Case(
        "guard-scan-out-is-a-folder",
        "guard scan --input {texts} --out {root}",
        code="E122",
        says=("--out",),
    ),
    Case(
        "guard-scan-task-missing",
        GUARD_SCAN + " --task {root}/nowhere/task.toml",
        code="E001",
        says=("{root}/nowhere/task.toml",),
    ),
]
CASES += bad_data_cases(
    "guard-scan",
    "guard scan --input {bad} --out {out}/flags.jsonl",
    [
        "invalid-json-line",
        "missing-text",
        "bad-utf8",
        "empty-file",
        "csv-no-text-column",
        "unsupported-suffix",
    ],
    not_says=("--skip-invalid",),
)
CASES += missing_and_odd_paths(
    "guard-scan", "guard scan --input {path} --out {out}/flags.jsonl", "E101", "E108"
)

# --- tracking (MLflow): --track, --register, task.toml [tracking] ---------------------------
# A store that cannot be written stops the command before its work: no --out, no store row.
NOT_A_DATABASE = " --track sqlite:///{test}"  # a JSONL file where the SQLite database should be


def tracking_section(text: str) -> Setup:
    return append("{task}", "\n[tracking]\n" + text + "\n")


CASES += [
    Case("train-track-empty", TRAIN + " --track ''", code="E971", says=("--track",)),
    Case(
        "train-track-folder-missing",
        TRAIN + " --track sqlite:///{root}/nowhere/mlflow.db",
        code="E972",
        says=("{root}/nowhere", "does not exist"),
    ),
    Case(
        "train-track-under-a-file",
        TRAIN + " --track sqlite:///{data}/mlflow.db",
        code="E973",
        says=("{data}", "a file"),
    ),
    Case(
        "train-track-database-is-a-folder",
        TRAIN + " --track sqlite:///{taskdir}",
        code="E973",
        says=("{taskdir}", "a folder"),
    ),
    Case(
        "train-track-not-a-database",
        TRAIN + NOT_A_DATABASE,
        code="E974",
        says=("{test}", "cannot be written"),
    ),
    Case("train-track-in-memory", TRAIN + " --track sqlite://", code="E978", says=("in-memory",)),
    Case(
        "train-track-sqlite-without-slashes",
        TRAIN + " --track sqlite:mlflow.db",
        code="E978",
        says=("sqlite:///PATH.db",),
    ),
    Case(
        "train-track-server-without-host", TRAIN + " --track http://", code="E978", says=("host",)
    ),
    Case(
        "train-track-server-not-answering",
        TRAIN + " --track http://127.0.0.1:9",
        code="E974",
        says=("http://127.0.0.1:9",),
        slow=True,
    ),
    Case(
        "train-register-without-tracking",
        TRAIN + " --register sentiment",
        code="E975",
        says=("--register", "[tracking] uri"),
    ),
    Case(
        "train-register-blank",
        TRAIN + " --track sqlite:///{root}/mlflow.db --register ' '",
        code="E976",
        says=("--register",),
    ),
    Case(
        "train-track-read-only-folder",
        TRAIN + " --track sqlite:///" + RO + "/mlflow.db",
        code="E974",
        says=(RO,),
        setup=MAKE_RO,
        run="mounts",
        prepare=PREPARE_RO,
    ),
    Case(
        "train-tracking-uri-empty-in-task",
        TRAIN,
        code="E003",
        says=("tracking.uri", "empty"),
        setup=tracking_section('uri = ""'),
    ),
    Case(
        "train-tracking-uri-not-text",
        TRAIN,
        code="E003",
        says=("tracking.uri",),
        setup=tracking_section("uri = 3"),
    ),
    Case(
        "train-tracking-unknown-key",
        TRAIN,
        code="E003",
        says=("tracking.url", "unknown key"),
        setup=tracking_section('url = "sqlite:///mlflow.db"'),
    ),
    Case(
        "train-tracking-register-blank",
        TRAIN,
        code="E003",
        says=("tracking.register", "only spaces"),
        setup=tracking_section('uri = "sqlite:///mlflow.db"\nregister = " "'),
    ),
    Case(
        "train-tracking-folder-missing-in-task",
        TRAIN,
        code="E972",
        says=("[tracking] uri", "{taskdir}/nowhere"),
        setup=tracking_section('uri = "sqlite:///nowhere/mlflow.db"'),
    ),
    Case("evaluate-track-not-a-database", EVALUATE + NOT_A_DATABASE, code="E974", says=("{test}",)),
    Case("audit-track-not-a-database", AUDIT + NOT_A_DATABASE, code="E974", says=("{test}",)),
    Case("annotate-track-not-a-database", ANNOTATE + NOT_A_DATABASE, code="E974", says=("{test}",)),
    Case("annotate-track-empty", ANNOTATE + " --track ' '", code="E971", says=("--track",)),
    Case(
        "audit-track-ok",
        AUDIT + " --track sqlite:///{root}/mlflow.db",
        exit=0,
        outputs=("{out}", "{root}/mlflow.db", "{root}/mlartifacts"),
        slow=True,
    ),
]

# --- --engine ray (stillhouse.scale): refused before Ray starts or anything is written -----------
CASES += [
    Case("annotate-engine-unknown", ANNOTATE + " --engine spark", code="E955", says=("spark",)),
    Case(
        "annotate-ray-address-without-ray",
        ANNOTATE + " --ray-address auto",
        code="E954",
        says=("--ray-address", "--engine ray"),
    ),
    Case(
        "annotate-ray-workers-without-ray",
        ANNOTATE + " --ray-workers 2",
        code="E954",
        says=("--ray-workers",),
    ),
    Case(
        "annotate-ray-address-not-an-address",
        ANNOTATE + " --engine ray --ray-address not-an-address",
        code="E950",
        says=("not-an-address", "ray://"),
    ),
    Case(
        "predict-ray-address-bad-port",
        PREDICT + " --engine ray --ray-address ray://head:99999",
        code="E950",
        says=("ray://head:99999",),
    ),
    Case(
        "evaluate-ray-address-empty",
        EVALUATE + " --engine ray --ray-address ''",
        code="E950",
        says=("--ray-address",),
    ),
    Case("audit-engine-unknown", AUDIT + " --engine dask", code="E955", says=("dask",)),
    Case("serve-replicas-without-ray", SERVE + " --replicas 2", code="E954", says=("--replicas",)),
    Case(
        "serve-autoscale-without-ray",
        SERVE + " --autoscale 1-2",
        code="E954",
        says=("--autoscale",),
    ),
    Case(
        "serve-ray-replicas-and-autoscale",
        SERVE + " --engine ray --replicas 2 --autoscale 1-3",
        code="E956",
        says=("--replicas", "--autoscale"),
    ),
    Case(
        "serve-ray-autoscale-reversed",
        SERVE + " --engine ray --autoscale 3-1",
        code="E953",
        says=("MIN-MAX", "3-1"),
    ),
    Case(
        "serve-ray-autoscale-not-numbers",
        SERVE + " --engine ray --autoscale many",
        code="E953",
        says=("many",),
    ),
    Case(
        "serve-ray-workers", SERVE + " --engine ray --workers 2", code="E959", says=("--replicas",)
    ),
]

# --- the app itself ---------------------------------------------------------------------------
CASES += [
    Case(f"{name}-help", f"{name} --help", exit=0, says=("Usage",))
    for name in ("init", "annotate", "export", "models", "demo", "evaluate", "train", "audit")
]
CASES += [
    Case("app-help", "--help", exit=0, says=("annotate", "evaluate")),
    Case("app-unknown-command", "label --task x", says=("label",)),
]

# --- label shortlists and `labels describe` ----------------------------------------------------
LABELS_DESCRIBE = "labels describe --task {task} --data {data}"
CASES += [
    Case("annotate-shortlist-one", ANNOTATE + " --shortlist 1", code="E561", says=("--shortlist",)),
    Case("annotate-shortlist-negative", ANNOTATE + " --shortlist -1", says=("--shortlist",)),
    Case("labels-help", "labels --help", exit=0, says=("describe",)),
    Case(
        "labels-describe-no-labelled-rows",
        "labels describe --task {task} --data {texts}",
        code="E562",
        says=("{texts}", "gold labels"),
    ),
    Case("labels-describe-per-label-zero", LABELS_DESCRIBE + " --per-label 0", code="E564"),
    Case("labels-describe-out-is-the-task", LABELS_DESCRIBE + " --out {task}", code="E120"),
    Case("labels-describe-no-data", "labels describe --task {task}", says=("--data",)),
]

assert len({case.id for case in CASES}) == len(CASES), "case ids must be unique"
