"""What each command logs to MLflow, from the documents it already writes (the model card,
results.json, the annotate summary, audit.json): one function per command, each one run.

- train: params (recipe, settings, hyper-parameters, data sha256, seed, versions), held-out
  metrics with their 95% interval bounds (``NAME_low`` / ``NAME_high``), calibration and speed,
  the card (``card/``), the model folder (``model_folder/``) and the model as a pyfunc
  (``model``), registered by name when asked; the card's README is the run's description.
- evaluate: one parent run (settings, data fingerprint, comparisons, results.json and
  report.html) with one nested run per system, each with the same metric names, so that MLflow's
  run table and charts compare systems column by column.
- annotate, audit: their summaries as params and metrics, and the summary documents.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from stillhouse.tracking.names import flat_metrics, flat_params
from stillhouse.tracking.tracker import RunLog, Tracker

PYFUNC_NAME = "model"
CARD_FOLDER = "card"
MODEL_FOLDER = "model_folder"
# Parts of an evaluated system's results that are per item or per bin, not metrics.
_NOT_SYSTEM_METRICS = (
    "description",
    "correct",
    "confusion_matrix",
    "most_confident_errors",
    "reliability_bins",
    "risk_coverage",
    "not_measured",
)
# The card's keys that are params (the rest are metrics, files or prose).
_CARD_PARAMS = ("recipe", "seed", "quantization", "refit", "stillhouse_version", "format_version")


def log_train(tracker: Tracker, folder: str | Path, card: dict[str, Any]) -> dict[str, str]:
    """Log a finished ``stillhouse train`` (its model ``folder`` and ``card``); returns the
    run id, the pyfunc's model URI and, when registered, its name and version."""
    folder = Path(folder)
    logged: dict[str, str] = {}
    register = tracker.target.register

    def write(run: RunLog) -> None:
        from stillhouse.tracking.pyfunc import log_pyfunc

        data = card["training_data"]
        params: dict[str, Any] = {key: card.get(key) for key in _CARD_PARAMS}
        params |= {
            "task.name": card["task"]["name"],
            "task.kind": card["task"].get("kind", "classify"),
            "task.sha256": card["task"]["sha256"],
            "labels": card["labels"],
            "base_model": (card.get("base_model") or {}).get("name"),
            "model_sha256": card["model_sha256"],
        }
        params |= flat_params(card["hyper_parameters"], "hp.")
        params |= {
            f"data.{key}": data[key]
            for key in ("origin", "sha256", "examples", "train_rows", "held_out_rows", "policy")
        }
        params |= {"data.min_llm_confidence": data["min_llm_confidence"], "data.mix": data["mix"]}
        params |= {f"version.{name}": version for name, version in card["versions"].items()}
        run.params(params)
        metrics = flat_metrics(card["held_out"], "held_out.")
        metrics |= flat_metrics(card["calibration"], "calibration.")
        metrics |= flat_metrics(card.get("speed") or {}, "speed.")
        metrics |= {"train_seconds": card["train_seconds"], "size_bytes": card["size_bytes"]}
        run.metrics(metrics)
        run.artifact(folder / "card.json", CARD_FOLDER)
        run.artifact(folder / "README.md", CARD_FOLDER)
        run.artifact(folder, MODEL_FOLDER)
        info = log_pyfunc(folder, PYFUNC_NAME, register)
        logged["model_uri"] = info.model_uri
        if register is not None:
            logged["registered"] = f"models:/{register}/{info.registered_model_version}"
        run.tags(
            {
                "mlflow.note.content": (folder / "README.md").read_text(encoding="utf-8"),
                "stillhouse.model_uri": info.model_uri,
            }
        )

    logged["run_id"] = tracker.log_run(
        "train",
        f"train {card['recipe']} · {card['task']['name']}",
        write,
        what="Training is",
        where=f"the model folder {folder}",
        tags={"stillhouse.task": card["task"]["name"], "stillhouse.recipe": card["recipe"]},
    )
    return logged


def log_evaluate(
    tracker: Tracker, results: Any, results_path: str | Path, report_path: str | Path
) -> dict[str, str]:
    """Log a finished ``stillhouse evaluate``: a parent run and one nested run per system;
    returns the parent's run id."""
    document = results.to_json()

    def write(run: RunLog) -> None:
        data = document["data"]
        params = {
            "task.name": document["task"]["name"],
            "task.kind": document["task"].get("kind", "classify"),
            "task.fingerprint": document["task"]["fingerprint"],
            "data.path": data["path"],
            "data.fingerprint": data["fingerprint"],
            "data.n_items": data["n_items"],
            "systems": list(document["systems"]),
        }
        params |= flat_params(document["settings"], "settings.")
        params |= {
            f"version.{name}": version
            for name, version in document["provenance"].get("package_versions", {}).items()
        }
        run.params(params)
        comparisons: dict[str, float | None] = {}
        for row in document["comparisons"]:
            name = f"compare.{row['a']} - {row['b']}.{row['metric']}"
            comparisons |= {
                f"{name}.difference": row["difference"],
                f"{name}.difference_low": row["low"],
                f"{name}.difference_high": row["high"],
                f"{name}.p_holm": row["p_holm"],
            }
        run.metrics(comparisons)
        run.artifact(results_path)
        run.artifact(report_path)
        for name, system in document["systems"].items():
            description = system.get("description") or {}
            with run.child(name, {"stillhouse.system": name}) as child:
                child.params({"system": name, **flat_params(description, "description.")})
                child.metrics(flat_metrics(system, skip=_NOT_SYSTEM_METRICS))

    run_id = tracker.log_run(
        "evaluate",
        f"evaluate · {document['task']['name']} · {', '.join(document['systems'])}",
        write,
        what="The evaluation is",
        where=f"{results_path} and {report_path}",
        tags={"stillhouse.task": document["task"]["name"]},
    )
    return {"run_id": run_id}


def log_annotate(tracker: Tracker, summary: Any, task_name: str) -> dict[str, str]:
    """Log a finished ``stillhouse annotate`` (its :class:`AnnotateSummary`)."""
    document = {
        **asdict(summary),
        "examples_per_second": summary.examples_per_second,
        "cache_hit_rate": summary.cache_hit_rate,
    }

    def write(run: RunLog) -> None:
        run.params(
            {
                "task.name": task_name,
                "annotator": summary.annotator,
                "model": summary.model,
                "method": summary.method,
                "store": summary.store,
                "stillhouse_run_id": summary.run_id,
            }
        )
        metrics = flat_metrics({key: value for key, value in document.items() if key != "privacy"})
        if summary.accuracy_interval is not None:
            low, high = summary.accuracy_interval
            metrics |= {"accuracy_low": low, "accuracy_high": high}
        metrics["skipped_rows"] = len(summary.skipped_rows)
        metrics |= flat_metrics((summary.privacy or {}).get("mentions", {}), "privacy.mentions.")
        run.metrics(metrics)
        run.json("annotate_summary.json", document)

    run_id = tracker.log_run(
        "annotate",
        f"annotate · {task_name} · {summary.model}",
        write,
        what="Annotation is",
        where=f"the store {summary.store}",
        tags={"stillhouse.task": task_name, "stillhouse.annotator": summary.annotator},
    )
    return {"run_id": run_id}


def log_audit(tracker: Tracker, outputs: Any) -> dict[str, str]:
    """Log a finished ``stillhouse audit`` (its :class:`AuditOutputs`): each check's count and
    status, the settings, audit.json and audit.html (and the fixed copy's log with --fix)."""
    document = outputs.document

    def write(run: RunLog) -> None:
        params = {"task.name": document["task"]["name"]}
        params |= flat_params(document.get("settings", {}), "settings.")
        params |= {
            f"data.{key}": value
            for key, value in document["data"].items()
            if not isinstance(value, dict | list)
        }
        run.params(params)
        metrics = {"rows": document["data"].get("rows"), "warnings": len(document["warnings"])}
        for name, check in document["checks"].items():
            metrics[f"checks.{name}.count"] = check["count"]
        metrics["review_queue.items"] = document["review_queue"].get("items")
        if outputs.fix is not None:
            metrics |= flat_metrics(asdict(outputs.fix), "fix.")
        run.metrics(metrics)
        run.tags({f"check.{name}": check["status"] for name, check in document["checks"].items()})
        run.artifact(outputs.json_path)
        run.artifact(outputs.html_path)
        if outputs.fix is not None:
            run.artifact(outputs.fix.log)

    run_id = tracker.log_run(
        "audit",
        f"audit · {document['task']['name']}",
        write,
        what="The audit is",
        where=f"{outputs.json_path} and {outputs.html_path}",
        tags={"stillhouse.task": document["task"]["name"]},
    )
    return {"run_id": run_id}
