"""Tracking on MLflow as a user runs it: `train`, `evaluate`, `audit` (and `annotate`, slow)
with --track or task.toml [tracking] log runs into a real SQLite store that `mlflow.search_runs`
reads back; the logged pyfunc answers exactly like `stillhouse predict`; a URI that cannot be
written stops the command before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from stillhouse.cli import app
from stillhouse.data.io import write_jsonl

mlflow = pytest.importorskip("mlflow", reason="the tracking extra: pip install -e '.[tracking]'")
pd = pytest.importorskip("pandas")

REPO = Path(__file__).resolve().parents[2]
NUSAX = REPO / "examples" / "nusax-sentiment-en"
TASK = 'name = "nusax-en"\n[labels]\npositive = "pos"\nneutral = "neu"\nnegative = "neg"\n'
REGISTERED = "nusax-linear"


def nusax(split: str, n: int) -> list[dict[str, Any]]:
    return pd.read_csv(NUSAX / f"{split}.csv", dtype=str).head(n).to_dict("records")


def cli(*args: str, cwd: Path | None = None) -> Any:
    """The real command in this process (MLflow and the model imported once for the module)."""
    previous = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    finally:
        os.chdir(previous)
    return result


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tracking")
    (folder / "task").mkdir()
    (folder / "task" / "task.toml").write_text(TASK, encoding="utf-8")
    write_jsonl(folder / "train.jsonl", nusax("train", 150))
    test = nusax("test", 60)
    write_jsonl(folder / "test.jsonl", test)
    write_jsonl(folder / "texts.jsonl", [{"id": r["id"], "text": r["text"]} for r in test])
    return folder


@pytest.fixture(scope="module")
def store(ws: Path) -> str:
    return f"sqlite:///{ws / 'mlflow.db'}"


@pytest.fixture(scope="module")
def trained(ws: Path, store: str) -> Iterator[dict[str, Any]]:
    """A small real linear model trained with --track and --register; its card and stderr."""
    result = cli(
        "train",
        "--task",
        str(ws / "task"),
        "--data",
        str(ws / "train.jsonl"),
        "--out",
        str(ws / "model"),
        "--char-ngrams",
        "none",
        "--track",
        store,
        "--register",
        REGISTERED,
        "--json",
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    card = json.loads((ws / "model" / "card.json").read_text(encoding="utf-8"))
    yield {"card": card, "stderr": result.stderr}


def runs(store: str, command: str) -> Any:
    mlflow.set_tracking_uri(store)
    return mlflow.search_runs(
        experiment_names=["nusax-en"], filter_string=f"tags.`stillhouse.command` = '{command}'"
    )


def test_train_logs_params_metrics_card_and_folder(trained: dict[str, Any], store: str) -> None:
    card = trained["card"]
    found = runs(store, "train")
    assert len(found) == 1
    run = found.iloc[0]
    assert run["status"] == "FINISHED"
    assert run["params.recipe"] == "linear" and run["params.seed"] == "0"
    assert run["params.data.sha256"] == card["training_data"]["sha256"]
    assert run["params.hp.char_ngrams"] == "null"  # --char-ngrams none, as the card says
    assert run["params.version.stillhouse"] == card["versions"]["stillhouse"]
    accuracy = card["held_out"]["accuracy"]
    assert run["metrics.held_out.accuracy"] == pytest.approx(accuracy["estimate"])
    assert run["metrics.held_out.accuracy_low"] == pytest.approx(accuracy["low"])
    assert run["metrics.held_out.accuracy_high"] == pytest.approx(accuracy["high"])
    assert run["metrics.calibration.temperature"] == pytest.approx(
        card["calibration"]["temperature"]
    )
    client = mlflow.MlflowClient(store)
    top = {item.path for item in client.list_artifacts(run["run_id"])}
    assert {"card", "model_folder"} <= top
    folder = {item.path for item in client.list_artifacts(run["run_id"], "model_folder")}
    assert {"model_folder/card.json", "model_folder/manifest.json"} <= folder
    description = client.get_run(run["run_id"]).data.tags["mlflow.note.content"]
    assert description.startswith("# nusax-en · linear")
    assert "registered as models:/nusax-linear/1" in trained["stderr"]


def test_pyfunc_predicts_exactly_like_stillhouse_predict(
    trained: dict[str, Any], ws: Path, store: str
) -> None:
    predicted = cli(
        "predict",
        "--model",
        str(ws / "model"),
        "--input",
        str(ws / "texts.jsonl"),
        "--out",
        str(ws / "preds.jsonl"),
    )
    assert predicted.exit_code == 0, predicted.stderr
    expected = [json.loads(line) for line in (ws / "preds.jsonl").read_text().splitlines()]
    texts = pd.read_json(ws / "texts.jsonl", lines=True, dtype=False)
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    model = mlflow.pyfunc.load_model(f"models:/{REGISTERED}/1")
    with_ids = model.predict(texts[["id", "text"]])
    assert with_ids.to_dict("records") == expected
    only_texts = model.predict(pd.DataFrame({"text": texts["text"]}))
    assert list(only_texts.columns) == ["label", "probs"]
    assert only_texts.to_dict("records") == [
        {"label": row["label"], "probs": row["probs"]} for row in expected
    ]
    assert set(expected[0]["probs"]) == {"positive", "neutral", "negative"}


def test_evaluate_logs_one_run_with_a_nested_run_per_system(
    trained: dict[str, Any], ws: Path, store: str
) -> None:
    out = ws / "eval"
    result = cli(
        "evaluate",
        "--task",
        str(ws / "task"),
        "--test",
        str(ws / "test.jsonl"),
        "--system",
        f"linear=model:{ws / 'model'}",
        "--system",
        f"file=preds:{ws / 'preds.jsonl'}",
        "--bootstrap",
        "200",
        "--efficiency-sample",
        "0",
        "--out",
        str(out),
        "--track",
        store,
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    parent = runs(store, "evaluate")
    assert len(parent) == 1
    parent_id = parent.iloc[0]["run_id"]
    assert parent.iloc[0]["params.data.fingerprint"] == results["data"]["fingerprint"]
    assert "metrics.compare.linear - file.accuracy.difference" in parent.columns
    children = mlflow.search_runs(
        experiment_names=["nusax-en"], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    assert sorted(children["tags.stillhouse.system"]) == ["file", "linear"]
    for _, child in children.iterrows():
        system = results["systems"][child["tags.stillhouse.system"]]
        for metric in ("accuracy", "macro_f1"):
            interval = system["metrics"][metric]
            assert child[f"metrics.metrics.{metric}"] == pytest.approx(interval["estimate"])
            assert child[f"metrics.metrics.{metric}_low"] == pytest.approx(interval["low"])
            assert child[f"metrics.metrics.{metric}_high"] == pytest.approx(interval["high"])
        assert child["metrics.calibration.ece_10_equal_mass"] == pytest.approx(
            system["calibration"]["ece_10_equal_mass"]
        )
    client = mlflow.MlflowClient(store)
    assert {a.path for a in client.list_artifacts(parent_id)} >= {"results.json", "report.html"}


def test_task_toml_tracking_puts_a_relative_store_next_to_task_toml(
    ws: Path, tmp_path: Path
) -> None:
    task = tmp_path / "task"
    task.mkdir()
    (task / "task.toml").write_text(
        TASK + '[tracking]\nuri = "sqlite:///mlflow.db"\nexperiment = "audits"\n',
        encoding="utf-8",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = cli(
        "audit",
        "--task",
        str(task),
        "--data",
        str(ws / "train.jsonl"),
        "--checks",
        "duplicates,text",
        "--out",
        str(tmp_path / "audit"),
        cwd=elsewhere,
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    assert (task / "mlflow.db").is_file() and not list(elsewhere.iterdir())
    uri = f"sqlite:///{task / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    found = mlflow.search_runs(experiment_names=["audits"])
    assert len(found) == 1
    run = found.iloc[0]
    document = json.loads((tmp_path / "audit" / "audit.json").read_text(encoding="utf-8"))
    duplicates = document["checks"]["duplicates"]
    assert run["metrics.checks.duplicates.count"] == duplicates["count"]
    assert run["tags.check.duplicates"] == duplicates["status"]
    assert run["metrics.rows"] == 150
    artifacts = {a.path for a in mlflow.MlflowClient(uri).list_artifacts(run["run_id"])}
    assert artifacts == {"audit.json", "audit.html"}
    # artifacts live beside the database, not in the folder the command ran from
    assert (task / "mlartifacts").is_dir()


@pytest.mark.parametrize(
    ("uri", "code", "says"),
    [
        ("sqlite:///{ws}/train.jsonl/mlflow.db", "E973", "is a file, where a folder must be"),
        (
            "sqlite:///{ws}/nowhere/mlflow.db",
            "E972",
            "nowhere for the SQLite database file does not",
        ),
        ("sqlite:///{ws}/junk.db", "E974", "cannot be written"),
        ("sqlite://", "E978", "in-memory"),
    ],
)
def test_a_store_that_cannot_be_written_stops_train_before_any_work(
    ws: Path, tmp_path: Path, uri: str, code: str, says: str
) -> None:
    (ws / "junk.db").write_text("not a database\n", encoding="utf-8")
    out = tmp_path / "never"
    result = cli(
        "train",
        "--task",
        str(ws / "task"),
        "--data",
        str(ws / "train.jsonl"),
        "--out",
        str(out),
        "--track",
        uri.format(ws=ws),
    )
    assert result.exit_code == 2, result.stdout + result.stderr
    assert f"[{code}]" in result.stderr and says in " ".join(result.stderr.split())
    assert "Traceback" not in result.stdout + result.stderr
    assert "fitting" not in result.stderr and not out.exists()  # no work was started


def test_commands_without_tracking_never_import_mlflow(ws: Path) -> None:
    script = (
        "import sys\n"
        "from stillhouse.task import load_task\n"
        "from stillhouse.tracking import start_tracking\n"
        f"assert start_tracking(load_task({str(ws / 'task')!r}), None) is None\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported without tracking'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_annotate_logs_its_summary(ws: Path, tmp_path: Path, write_task: Any) -> None:
    task = tmp_path / "task"
    write_task(task)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = cli(
        "annotate",
        "--task",
        str(task),
        "--input",
        str(ws / "test.jsonl"),
        "--limit",
        "2",
        "--track",
        store,
        "--json",
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    mlflow.set_tracking_uri(store)
    found = mlflow.search_runs(search_all_experiments=True)
    assert len(found) == 1
    run = found.iloc[0]
    assert run["tags.stillhouse.command"] == "annotate"
    assert run["metrics.examples"] == 2 and run["metrics.annotated"] == 2
    assert run["params.model"] == "smollm2-135m" and run["params.method"] == "score"
    assert "metrics.accuracy_low" in found.columns


def test_a_failure_while_logging_marks_the_run_failed_and_says_the_outputs_are_whole(
    tmp_path: Path,
) -> None:
    from stillhouse.errors import StillhouseError
    from stillhouse.task import load_task
    from stillhouse.tracking import start_tracking

    (tmp_path / "task.toml").write_text(TASK, encoding="utf-8")
    report = tmp_path / "report.html"
    report.write_text("<p>done</p>", encoding="utf-8")
    tracker = start_tracking(load_task(tmp_path), f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert tracker is not None
    # after the store was opened, a file takes the place of the artifact folder
    (tmp_path / "mlartifacts").write_text("in the way\n", encoding="utf-8")
    with pytest.raises(StillhouseError) as caught:
        tracker.log_run(
            "evaluate",
            "a run",
            lambda run: run.artifact(report),
            what="The evaluation is",
            where=str(report),
        )
    assert caught.value.code == "E977"
    assert f"The evaluation is complete ({report})" in caught.value.message
    run = mlflow.MlflowClient(tracker.target.uri).get_run(tracker.run_ids[0])
    assert run.info.status == "FAILED"
