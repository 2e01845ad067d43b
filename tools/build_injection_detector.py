"""Rebuild the prompt-injection detector shipped in the package, bit-for-bit.

    .venv/bin/python tools/build_injection_detector.py [--recipe linear|encoder-ngrams]
        [--datasets ../shared/datasets] [--out FOLDER] [--seed 0]

Builds the corpus (stillhouse.guard.injection_corpus) from the shared datasets, trains it with
`stillhouse train` (--recipe: linear, the default detector, in src/stillhouse/guard/detector;
encoder-ngrams in src/stillhouse/guard/detector-encoder), chooses the threshold on the valid
split, measures the held-out families and writes the model folder with its card. The same
datasets, seed and package versions give the same files: compare manifest.json (`git diff`
shows nothing). A new task.toml setting changes the task fingerprint the card records (the model
files stay the same): rebuild both detectors then, so their cards are what this code writes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stillhouse.guard.injection import DEFAULT_DETECTOR, DETECTORS, build_detector

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--recipe", choices=list(DETECTORS), default=DEFAULT_DETECTOR)
    parser.add_argument("--out", type=Path, help="default: the recipe's folder in the package")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    out = arguments.out or DETECTORS[arguments.recipe]
    card = build_detector(
        arguments.datasets, out, seed=arguments.seed, recipe=arguments.recipe, say=print
    )
    section = card["injection_detector"]
    print(
        json.dumps({"threshold": section["threshold"], "held_out": section["held_out"]}, indent=1)
    )
    print(f"wrote {out} (model sha256 {card['model_sha256']})")


if __name__ == "__main__":
    main()
