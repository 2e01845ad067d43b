"""The bad-input suite's machinery: a real workspace built once per session, copied per case,
the three ways a case runs the real `stillhouse` command (in this process, in a subprocess, in a
private mount namespace), the faults (kill -9, Ctrl-C, a store locked by another process) and
the invariants every case checks (exit code, no traceback, the message naming the culprit,
every file that existed unchanged but the declared outputs, the store whole).

The template workspace (its paths by placeholder, as cases write them):

    {task}      task/task.toml       NusaX sentiment on smollm2-135m, [gate] min_accuracy = 0.3
    {store}     task/stillhouse.db   60 train examples with gold and LLM labels, stamped by a
                                     real `annotate --limit 2` run
    {data}      data/train.jsonl     60 labelled NusaX train rows  ({data_csv}: the same as CSV)
    {test}      data/test.jsonl      40 labelled NusaX test rows   ({test_csv}: the same as CSV)
    {texts}     data/texts.jsonl     the 40 test texts without labels
    {model}     model/               a `linear` model folder trained on {data}
    {preds}     preds/test.jsonl     {model}'s predictions for {test}
    {results}   reports/base/results.json   `evaluate` of systems file (={preds}) and model
    {out}       out                  a path that does not exist yet (for outputs)
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from stillhouse.cli import app
from stillhouse.data.records import Annotation, Example
from stillhouse.data.store import Store
from stillhouse.task import load_task
from stillhouse.train import TrainSettings, train

SMALL_MODEL = "smollm2-135m"
LLM_ANNOTATOR = f"llm:{SMALL_MODEL}@00000000"
GATE = "\n[gate]\nmin_accuracy = 0.3\n"
STORE_FILES = ("stillhouse.db", "stillhouse.db-wal", "stillhouse.db-shm")


class Workspace:
    """One case's copy of the template: paths by placeholder name, and ``expand`` for argv."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.places = {
            "root": root,
            "taskdir": root / "task",
            "task": root / "task" / "task.toml",
            "store": root / "task" / "stillhouse.db",
            "data": root / "data" / "train.jsonl",
            "data_csv": root / "data" / "train.csv",
            "test": root / "data" / "test.jsonl",
            "test_csv": root / "data" / "test.csv",
            "texts": root / "data" / "texts.jsonl",
            "model": root / "model",
            "preds": root / "preds" / "test.jsonl",
            "results": root / "reports" / "base" / "results.json",
            "out": root / "out",
        }

    def __getitem__(self, name: str) -> Path:
        return self.places[name]

    def expand(self, text: str) -> str:
        """``text`` with every ``{name}`` replaced by that path (``{{`` is a literal brace)."""
        return text.format(**{name: str(path) for name, path in self.places.items()})

    def path(self, text: str) -> Path:
        return Path(self.expand(text))


# ------------------------------------------------------------------------------------------
# the template


def build_template(
    root: Path,
    task_writer: Callable[..., Path],
    train_rows: Sequence[dict[str, Any]],
    test_rows: Sequence[dict[str, Any]],
    write_rows: Callable[[Path, Sequence[dict[str, Any]]], Path],
    env: dict[str, str],
) -> Workspace:
    """Build the template workspace under ``root`` with the real library and CLI (see the
    module docstring); a few seconds, most of them the real annotate run."""
    ws = Workspace(root)
    task_path = task_writer(ws["taskdir"])
    task_path.write_text(task_path.read_text(encoding="utf-8") + GATE, encoding="utf-8")
    write_rows(ws["data"], train_rows)
    write_rows(ws["data_csv"], train_rows)
    write_rows(ws["test"], test_rows)
    write_rows(ws["test_csv"], test_rows)
    write_rows(ws["texts"], [{"id": row["id"], "text": row["text"]} for row in test_rows])
    task = load_task(task_path)
    labels = task.label_names
    examples = [Example(row["id"], row["text"], {}, row["label"]) for row in train_rows]
    with Store(ws["store"]) as store:
        store.add_examples(examples, task.kind)
        store.add_annotations([Annotation(e.id, "gold", e.gold) for e in examples], task.kind)
        llm = []
        for number, example in enumerate(examples):
            # four in five agree with gold, every answer has a probability per label
            answer = example.gold if number % 5 else labels[(labels.index(example.gold) + 1) % 3]
            probs = {label: 0.8 if label == answer else 0.1 for label in labels}
            llm.append(Annotation(example.id, LLM_ANNOTATOR, answer, probs, {}, time.time()))
        store.add_annotations(llm, task.kind)
    # a real run stamps the store as the real code does (runs row, and whatever else it keeps)
    stamped = invoke(
        ["annotate", "--task", str(task_path), "--input", str(ws["data"]), "--limit", "2"], env
    )
    assert stamped.code == 0, stamped.text
    train(
        task,
        ws["model"],
        TrainSettings(latency_texts=20, throughput_texts=40),
        data=ws["data"],
    )
    predicted = invoke(
        [
            *("predict", "--model", str(ws["model"]), "--input", str(ws["test"])),
            *("--out", str(ws["preds"]), "--task", str(task_path)),
        ],
        env,
    )
    assert predicted.code == 0, predicted.text
    evaluated = invoke(
        [
            *("evaluate", "--task", str(task_path), "--test", str(ws["test"])),
            *("--system", f"file=preds:{ws['preds']}", "--system", f"model=model:{ws['model']}"),
            *("--bootstrap", "50", "--efficiency-sample", "0", "--out", str(ws["results"].parent)),
        ],
        env,
    )
    assert evaluated.code == 0, evaluated.text
    leftovers = [p.name for p in ws["taskdir"].iterdir() if p.name.endswith(("-wal", "-shm"))]
    assert not leftovers, leftovers
    return ws


def copy_template(template: Workspace, root: Path) -> Workspace:
    shutil.copytree(template.root, root, symlinks=True)
    return Workspace(root)


# ------------------------------------------------------------------------------------------
# running a command


@dataclass(frozen=True)
class Outcome:
    """What a command did: exit code, stdout, stderr, and a traceback if one escaped."""

    code: int
    stdout: str
    stderr: str
    traceback: str = ""
    seconds: float = 0.0

    @property
    def text(self) -> str:
        streams = f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}{self.traceback}"
        return f"exit {self.code}\n{streams}"


def invoke(argv: Sequence[str], env: dict[str, str]) -> Outcome:
    """The command in this process (typer's CliRunner): an exception that is not SystemExit is a
    traceback the user would have seen."""
    started = time.perf_counter()
    result = CliRunner().invoke(app, list(argv), env=env, catch_exceptions=True)
    escaped = ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        escaped = "Traceback (in process):\n" + "".join(
            traceback.format_exception(result.exception)
        )
    return Outcome(
        result.exit_code, result.stdout, result.stderr, escaped, time.perf_counter() - started
    )


def cli_command() -> list[str]:
    return [sys.executable, "-m", "stillhouse.cli"]


def run_process(argv: Sequence[str], env: dict[str, str], cwd: Path, timeout: float) -> Outcome:
    """The real command in a subprocess."""
    started = time.perf_counter()
    done = subprocess.run(
        [*cli_command(), *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Outcome(done.returncode, done.stdout, done.stderr, "", time.perf_counter() - started)


def run_in_mounts(
    prepare: str, argv: Sequence[str], env: dict[str, str], cwd: Path, timeout: float
) -> Outcome:
    """The real command in a private mount namespace, after the shell commands ``prepare``
    (mounts: :func:`read_only`, :func:`full_disk`) ran there; nothing is mounted outside it."""
    started = time.perf_counter()
    script = f'{prepare} && exec "$0" -m stillhouse.cli "$@"'
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, sys.executable, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Outcome(done.returncode, done.stdout, done.stderr, "", time.perf_counter() - started)


def private_mounts_available(scratch: Path) -> str:
    """The empty string when a read-only bind mount and a tmpfs can be made in a private mount
    namespace here, else why not."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    scratch.mkdir(parents=True, exist_ok=True)
    probe = f"{read_only(str(scratch))} && {full_disk(str(scratch))}"
    try:
        done = subprocess.run(
            ["unshare", "-m", "sh", "-c", probe], capture_output=True, text=True, timeout=30
        )
    except OSError as error:
        return str(error)
    return "" if done.returncode == 0 else f"private mounts refused: {done.stderr.strip()}"


def read_only(path: str) -> str:
    """Shell: make ``path`` (a folder) a read-only bind mount of itself."""
    quoted = shlex.quote(path)
    return f"mount --bind {quoted} {quoted} && mount -o remount,bind,ro {quoted}"


def full_disk(path: str, copy: Sequence[str] = (), *, fill: bool = True) -> str:
    """Shell: a 256 KiB tmpfs over ``path`` (a folder) holding copies of the files ``copy``,
    then (``fill``) filled up, so the next byte written there fails with ENOSPC."""
    quoted = shlex.quote(path)
    steps = [f"mount -t tmpfs -o size=256k tmpfs {quoted}"]
    if copy:
        # the files are read before the mount hides what is below it
        sources = " ".join(shlex.quote(name) for name in copy)
        steps = [
            f"stage=$(mktemp -d) && cp {sources} $stage/",
            *steps,
            f"cp $stage/* {quoted}/ && rm -r $stage",
        ]
    if fill:
        steps.append(f"(cat /dev/zero > {quoted}/.filler 2>/dev/null; true)")
    return " && ".join(steps)


# ------------------------------------------------------------------------------------------
# faults: the process is killed or interrupted mid-run, or the store is locked by another one


def _wait_for(
    condition: Callable[[], bool], process: subprocess.Popen[str], timeout: float
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if condition():
            return True
        time.sleep(0.005)
    return False


def _start(argv: Sequence[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*cli_command(), *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def temporary_model_folder(out: Path) -> Callable[[], bool]:
    """Whether train's temporary sibling of ``out`` (``.NAME.*.tmp``) exists yet."""
    return lambda: any(out.parent.glob(f".{out.name}.*.tmp"))


def running_annotate(store: Path, before: int) -> Callable[[], bool]:
    """Whether an annotate run has started (a runs row beyond the ``before`` rows) and committed
    a batch of LLM annotations."""

    def started() -> bool:
        try:
            with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=0.1) as db:
                runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
                newest = db.execute("SELECT id FROM runs ORDER BY started_at DESC").fetchone()
                done = db.execute(
                    "SELECT COUNT(*) FROM annotations WHERE run_id = ?", (newest[0],)
                ).fetchone()[0]
            return bool(runs > before and done > 0)
        except sqlite3.Error:
            return False

    return started


def signal_mid_run(
    argv: Sequence[str],
    env: dict[str, str],
    cwd: Path,
    when: Callable[[], bool],
    signum: int,
    timeout: float = 120,
) -> Outcome:
    """Run the command, send ``signum`` once ``when()`` holds, and return how it ended (a
    SIGKILLed process: code -9). AssertionError when the moment never came."""
    started = time.perf_counter()
    process = _start(argv, env, cwd)
    try:
        hit = _wait_for(when, process, timeout)
        if hit:
            process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert hit, f"the moment to send signal {signum} never came:\n{stdout}\n{stderr}"
    return Outcome(process.returncode, stdout, stderr, "", time.perf_counter() - started)


# Holds an exclusive lock until a line arrives on stdin, then lets go cleanly (SQLite removes
# the -wal file it made), so whatever is left beside the store afterwards is the command's.
LOCK_HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
db.execute("PRAGMA locking_mode=EXCLUSIVE")
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
db.close()
"""


def with_store_locked(
    store: Path, argv: Sequence[str], env: dict[str, str], cwd: Path, hold: float = 90
) -> Outcome:
    """Run the command while another process holds an exclusive lock on ``store``."""
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        return run_process(argv, env, cwd, timeout=hold)
    finally:
        holder.communicate("done\n", timeout=30)


# ------------------------------------------------------------------------------------------
# invariants


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (relative path → sha256 of a file, "dir" or the link target)."""
    found: dict[str, str] = {}
    for parent, folders, files in os.walk(root):
        here = Path(parent)
        for name in folders + files:
            path = here / name
            key = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[key] = "link:" + os.readlink(path)
            elif path.is_dir():
                found[key] = "dir"
            else:
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def store_state(store: Path) -> tuple[str, dict[str, int]] | None:
    """``PRAGMA integrity_check``'s verdict and the row count of each table, or None when
    ``store`` is no readable SQLite file (a case damaged it on purpose)."""
    if not store.is_file():
        return None
    try:
        db = sqlite3.connect(store, timeout=5)
        try:
            verdict = "; ".join(row[0] for row in db.execute("PRAGMA integrity_check"))
            tables = [
                row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            counts = {
                table: db.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
                for table in tables
            }
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return verdict, counts


def runs_by_status(store: Path) -> dict[str, int]:
    db = sqlite3.connect(store, timeout=5)
    try:
        rows = db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()
    finally:
        db.close()
    return {status: count for status, count in rows}


def changed_entries(
    before: dict[str, str], after: dict[str, str], allowed: Sequence[str]
) -> list[str]:
    """What changed, appeared or disappeared between two snapshots, outside ``allowed`` (paths
    relative to the workspace; everything below an allowed folder is allowed too)."""

    def is_allowed(key: str) -> bool:
        return any(key == place or key.startswith(place + "/") for place in allowed)

    problems = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) == after.get(key) or is_allowed(key):
            continue
        if key not in after:
            problems.append(f"removed: {key}")
        elif key not in before:
            problems.append(f"new: {key}")
        else:
            problems.append(f"changed: {key}")
    return problems
