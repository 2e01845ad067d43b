"""What recipes are built from: the ONNX sentence-encoder runtime, the LoRA training loop, GGUF
LoRA adapters and the transformers copy of a GGUF model, and span confidences. Not recipes
themselves (the registry does not look here)."""
