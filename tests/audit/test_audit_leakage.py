"""Train/test leakage: exact and near copies of test texts in the training data."""

from __future__ import annotations

from audit_data import nusax_rows

from stillhouse.audit.leakage import check_leakage
from stillhouse.data.records import Example


def test_copied_test_rows_are_found_with_the_share_of_the_test_set() -> None:
    train_rows = nusax_rows("english", "train", 200)
    test_rows = nusax_rows("english", "test", 100)
    train = [Example(r["id"], r["text"], gold=r["label"]) for r in train_rows]
    test = [Example(r["id"], r["text"], gold=r["label"]) for r in test_rows]
    train.append(Example("leak-exact", test_rows[3]["text"].lower(), gold=test_rows[3]["label"]))
    train.append(Example("leak-near", test_rows[8]["text"] + " Really.", gold="neutral"))

    result = check_leakage(train, test, threshold=0.7)

    assert result.status == "problem"
    assert result.metrics["test_rows_leaked"] == 2
    assert result.metrics["test_share_leaked"] == 0.02
    kinds = {(p.train_id, p.kind) for p in result.findings}
    assert kinds == {("leak-exact", "exact"), ("leak-near", "near")}
    assert "inflated" in result.summary
    assert next(p for p in result.findings if p.kind == "exact").same_label is True


def test_disjoint_splits_do_not_leak() -> None:
    train = [Example(r["id"], r["text"]) for r in nusax_rows("english", "train", 200)]
    test = [Example(r["id"], r["text"]) for r in nusax_rows("english", "test", 100)]
    result = check_leakage(train, test, threshold=0.8)
    assert result.status == "ok" and result.metrics["test_rows_leaked"] == 0
