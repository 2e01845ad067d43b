"""Where the bytes of the int8 MiniLM encoder go, and why it is not 4× smaller than fp32.

Reads the two cached ONNX files of the `encoder` recipe (`exported_encoder("none")` and
`exported_encoder("int8")`, made if missing) and splits each file's size into: weights stored
in 8 bits, weights kept in fp32 (biases, LayerNorm, the quantization scales), the
quantization zero points, and the graph itself (nodes, names: the file size minus every
initializer). Prints a markdown table and the ratios; no timing, cheap to run.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from _common import table_head
from onnx import numpy_helper

from stillhouse.train.export import base_model_path, exported_encoder


def breakdown(path: Path) -> dict[str, float]:
    model = onnx.load(str(path))
    parts: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for tensor in model.graph.initializer:
        array = numpy_helper.to_array(tensor)
        name = tensor.name
        if name.endswith("_zero_point"):
            kind = "zero points (8-bit)"
        elif name.endswith("_scale"):
            kind = "scales (fp32)"
        elif array.dtype in (np.int8, np.uint8):
            kind = "weights, 8-bit"
        elif array.dtype == np.float32 and array.size >= 4096 and array.ndim == 2:
            kind = "weight matrices, fp32"
        elif array.dtype == np.float32:
            kind = "biases + LayerNorm + small, fp32"
        else:
            kind = f"other ({array.dtype})"
        parts[kind] += array.nbytes
        counts[kind] += array.size
    size = path.stat().st_size
    parts["graph (nodes, names, file framing)"] = size - sum(parts.values())
    parts["file"] = size
    return dict(parts)


def main() -> None:
    fp32, int8 = exported_encoder("none"), exported_encoder("int8")
    tokenizer = (base_model_path() / "tokenizer.json").stat().st_size
    rows = {"fp32": breakdown(fp32), "int8": breakdown(int8)}
    kinds = sorted({kind for parts in rows.values() for kind in parts if kind != "file"})
    print(*table_head("part", "fp32 MB", "int8 MB"), sep="\n")
    for kind in kinds:
        print(
            f"| {kind} | {rows['fp32'].get(kind, 0) / 1e6:.3f} | {rows['int8'].get(kind, 0) / 1e6:.3f} |"
        )
    print(
        f"| **ONNX file** | {rows['fp32']['file'] / 1e6:.3f} | {rows['int8']['file'] / 1e6:.3f} |"
    )
    print(
        f"| tokenizer.json (in both model folders) | {tokenizer / 1e6:.3f} | {tokenizer / 1e6:.3f} |"
    )
    weights_fp32 = sum(
        v for k, v in rows["fp32"].items() if k not in ("file",) and "graph" not in k
    )
    ideal = weights_fp32 / 4
    print()
    print(f"ONNX file ratio fp32/int8: {rows['fp32']['file'] / rows['int8']['file']:.3f}×")
    print(
        f"with tokenizer.json: {(rows['fp32']['file'] + tokenizer) / (rows['int8']['file'] + tokenizer):.3f}×"
    )
    print(
        f"ideal (every fp32 weight byte → 1 byte, no scales, no graph): {weights_fp32 / 1e6:.3f} MB → "
        f"{ideal / 1e6:.3f} MB = 4.000×; file needed for 4× of the fp32 file: "
        f"{rows['fp32']['file'] / 4 / 1e6:.3f} MB"
    )


if __name__ == "__main__":
    main()
