"""Turning stillhouse's JSON documents (a model card, results.json, a summary) into what MLflow
takes: flat metric names with ``_low`` / ``_high`` for an interval's bounds, and param values
as strings of bounded length."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping
from typing import Any

# MLflow accepts letters, digits, `_ - . / :` and spaces in a key; anything else becomes `_`.
_NOT_IN_KEY = re.compile(r"[^A-Za-z0-9_\-./: ]")
_MAX_KEY = 250
_MAX_PARAM = 6000


def metric_key(name: str) -> str:
    """``name`` with the characters MLflow refuses in a key replaced by ``_``."""
    return _NOT_IN_KEY.sub("_", name)[:_MAX_KEY] or "_"


def param_value(value: Any) -> str:
    """A param's value as MLflow stores it: a string (lists and objects as JSON), cut to 6000
    characters (MLflow's limit)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= _MAX_PARAM else text[: _MAX_PARAM - 1] + "…"


def is_interval(value: Any) -> bool:
    """Whether ``value`` is stillhouse's interval ``{"estimate", "low", "high"}``."""
    return isinstance(value, Mapping) and {"estimate", "low", "high"} <= set(value)


def flat_metrics(
    tree: Mapping[str, Any], prefix: str = "", skip: Collection[str] = ()
) -> dict[str, float]:
    """Every number below ``tree`` as ``prefix + dotted.path`` → value: an interval gives
    ``NAME`` (its estimate), ``NAME_low`` and ``NAME_high``; booleans count as 0/1; strings,
    lists and None are not metrics. Keys in ``skip`` are left out at any depth."""
    found: dict[str, float] = {}
    for key, value in tree.items():
        if key in skip:
            continue
        name = f"{prefix}{key}"
        if is_interval(value):
            for suffix, part in (("", "estimate"), ("_low", "low"), ("_high", "high")):
                number = _number(value[part])
                if number is not None:
                    found[name + suffix] = number
        elif isinstance(value, Mapping):
            found.update(flat_metrics(value, f"{name}.", skip))
        else:
            number = _number(value)
            if number is not None:
                found[name] = number
    return found


def flat_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every leaf below ``tree`` as ``prefix + dotted.path`` → value (lists stay whole)."""
    found: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            found.update(flat_params(value, f"{name}."))
        else:
            found[name] = value
    return found


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isinf(value)):
        return float(value)
    return None
