"""Ways to make the int8 encoder faster, measured side by side: what the `encoder` recipe ships
and the variants tried and dropped, plus the head's BLAS threads.

One process, banking77 test texts (the first --texts), fed 64 texts per call as bench/train.py
measures throughput; the best of --repeats passes. Rows:

- ONNX graphs through :class:`OnnxSentenceEncoder` (same batching, same tokenizer): the shipped
  dynamic int8 (per-channel weights) and fp32 exports; an export with eager attention that ONNX
  Runtime's transformer optimizer fuses (EmbedLayerNormalization, Attention, SkipLayerNorm,
  BiasGelu), then dynamically quantized (Attention → QAttention); static int8 (MatMuls only,
  per-channel weights, uint8 activations, MinMax calibration on 256 banking77 train texts) in
  QOperator and QDQ formats. Each with its cosine to the fp32 graph's batch-1 vectors (500
  texts: min and mean).
- The head: shipped int8 encoder + a 77-label logistic head (fitted on banking77-10shot
  embeddings) whose product runs on numpy's default two OpenBLAS threads, against the same with
  :meth:`LinearHead.logits` (one BLAS thread, as shipped).

Variant files are made once under $STILLHOUSE_HOME/bench/encoder-variants (a few minutes).
Prints a markdown table; run alone (`OMP_NUM_THREADS=2`), absolute speeds are noisy.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
from _common import (
    BANKING77,
    BATCH,
    batched_pass_seconds,
    bench_cache_dir,
    first_per_label,
    read_csv,
    shuffled,
    table_head,
)

from stillhouse.train.export import base_model_path, export_onnx, exported_encoder
from stillhouse.train.head import fit_head
from stillhouse.train.recipes.parts.onnx_encoder import OnnxSentenceEncoder


def fused_int8(folder: Path) -> Path:
    """Eager-attention export → transformer optimizer (bert, 12 heads, 384) → dynamic int8."""
    target = folder / "eager-fused-int8.onnx"
    if target.is_file():
        return target
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer
    from transformers import AutoModel

    eager = folder / "eager-fp32.onnx"
    original = AutoModel.from_pretrained

    def eager_attention(path: str, **kwargs: object) -> object:
        return original(path, attn_implementation="eager", **kwargs)

    AutoModel.from_pretrained = eager_attention  # type: ignore[assignment]
    try:
        export_onnx(base_model_path(), eager)
    finally:
        AutoModel.from_pretrained = original  # type: ignore[method-assign]
    fused = folder / "eager-fused-fp32.onnx"
    model = optimizer.optimize_model(
        str(eager), model_type="bert", num_heads=12, hidden_size=384, opt_level=1
    )
    counts = model.get_fused_operator_statistics()
    print(f"fused: { {k: v for k, v in counts.items() if v} }", flush=True)
    model.save_model_to_file(str(fused))
    quantize_dynamic(
        str(fused),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return target


def static_int8(folder: Path, quant_format: str) -> Path:
    target = folder / f"static-{quant_format.lower()}-int8.onnx"
    if target.is_file():
        return target
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(base_model_path() / "tokenizer.json"))
    tokenizer.no_padding()
    texts = shuffled(row["text"] for row in read_csv(BANKING77 / "train.csv"))

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            feeds = []
            for offset in range(0, 256, 16):
                encodings = tokenizer.encode_batch(texts[offset : offset + 16])
                ids = np.zeros((len(encodings), max(len(e.ids) for e in encodings)), np.int64)
                mask = np.zeros_like(ids)
                for row, encoding in enumerate(encodings):
                    ids[row, : len(encoding.ids)] = encoding.ids
                    mask[row, : len(encoding.ids)] = 1
                feeds.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * ids})
            self.feeds = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    quantize_static(
        str(exported_encoder("none")),
        str(target),
        Batches(),
        quant_format=getattr(QuantFormat, quant_format),
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return target


def throughput(predict: Callable[[Sequence[str]], object], texts: list[str], repeats: int) -> float:
    """Texts per second of ``predict`` over ``texts``, 64 per call: the fastest of ``repeats``."""
    return len(texts) / batched_pass_seconds(predict, texts, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = bench_cache_dir() / "encoder-variants"
    folder.mkdir(parents=True, exist_ok=True)
    texts = [row["text"] for row in read_csv(BANKING77 / "test.csv")][: args.texts]
    tokenizer = base_model_path() / "tokenizer.json"

    def encoder(path: Path) -> OnnxSentenceEncoder:
        return OnnxSentenceEncoder(path, tokenizer, threads=args.threads)

    reference = encoder(exported_encoder("none")).embed(texts[:500], batch_size=1)
    graphs = {
        "shipped: dynamic int8, per-channel": exported_encoder("int8"),
        "shipped: fp32 (--quantize none)": exported_encoder("none"),
        "eager attention, fused, dynamic int8": fused_int8(folder),
        "static int8, QOperator": static_int8(folder, "QOperator"),
        "static int8, QDQ": static_int8(folder, "QDQ"),
    }
    print(
        f"\n{len(texts)} banking77 test texts, {BATCH} per call, best of {args.repeats}, "
        f"{args.threads} threads\n"
    )
    print(
        *table_head("variant", "texts/s (batch 64)", "cosine to fp32 batch-1: min", "mean"),
        sep="\n",
    )
    for name, path in graphs.items():
        model = encoder(path)
        cosine = (model.embed(texts[:500], batch_size=BATCH) * reference).sum(axis=1)
        speed = throughput(partial(model.embed, batch_size=32), texts, args.repeats)
        print(f"| {name} | {speed:.0f} | {cosine.min():.3f} | {cosine.mean():.3f} |", flush=True)

    shipped = encoder(exported_encoder("int8"))
    # the first 10 train texts of each intent in file order (not the seed-0 shuffle)
    few = first_per_label(read_csv(BANKING77 / "train.csv"), 10, lambda row: row["category"])
    labels = sorted({row["category"] for row in few})
    rows = [
        (row["text"], index)
        for index, label in enumerate(labels)
        for row in few
        if row["category"] == label
    ]
    features = shipped.embed([text for text, _ in rows])
    y = np.array([index for _, index in rows])
    head = fit_head(features, y, len(labels), np.ones(len(y)), c=10.0, max_iter=2000)

    def two_blas_threads(batch: Sequence[str]) -> object:
        return shipped.embed(batch, batch_size=32) @ head.weight.T + head.bias

    def one_blas_thread(batch: Sequence[str]) -> object:
        return head.logits(shipped.embed(batch, batch_size=32))

    for name, predict in [
        ("int8 encoder + head product on 2 OpenBLAS threads (before)", two_blas_threads),
        ("int8 encoder + head product on 1 BLAS thread (shipped)", one_blas_thread),
    ]:
        print(f"| {name} | {throughput(predict, texts, args.repeats):.0f} | – | – |", flush=True)


if __name__ == "__main__":
    main()
