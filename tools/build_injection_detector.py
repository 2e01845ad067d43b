"""Rebuild the prompt-injection detector shipped in the package, bit-for-bit.

    .venv/bin/python tools/build_injection_detector.py [--datasets ../shared/datasets]
        [--out src/stillhouse/guard/detector] [--seed 0]

Builds the corpus (stillhouse.guard.injection_corpus) from the shared datasets, trains it with
`stillhouse train` (recipe linear), chooses the threshold on the valid split, measures the
held-out families and writes the model folder with its card. The same datasets, seed and package
versions give the same files: compare manifest.json (`git diff` shows nothing).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stillhouse.guard.injection import DETECTOR, build_detector

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=DETECTOR)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    card = build_detector(arguments.datasets, arguments.out, seed=arguments.seed, say=print)
    section = card["injection_detector"]
    print(
        json.dumps({"threshold": section["threshold"], "held_out": section["held_out"]}, indent=1)
    )
    print(f"wrote {arguments.out} (model sha256 {card['model_sha256']})")


if __name__ == "__main__":
    main()
