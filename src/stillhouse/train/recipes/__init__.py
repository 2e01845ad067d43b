"""Training recipes, one module each; every module registers its recipe by name
(:data:`stillhouse.registry.recipes`), so a new recipe is a new module here.

- ``linear``: TF-IDF n-grams and a logistic head (classify, multilabel);
- ``encoder``: all-MiniLM-L6-v2 embeddings (ONNX) and a logistic head (classify, multilabel);
- ``encoder-ngrams``: those embeddings beside ``linear``'s n-grams, one head (classify);
- ``llm-embed`` / ``llm-embed-ngrams``: the task's GGUF LLM cut to its first blocks (llama.cpp
  embedding mode), optionally with character n-grams, and a logistic head (classify);
- ``contrastive-encoder``: SetFit's contrastive fine-tuning of the encoder (classify);
- ``lora-encoder``: LoRA fine-tuning of the encoder with its head (classify);
- ``lora-llm``: LoRA fine-tuning of the task's LLM for label scoring (classify);
- ``spacy-ner``: spaCy's NER fine-tuned from en_core_web_sm (spans).

The pieces several recipes are built from (the ONNX encoder runtime, the LoRA training loop,
GGUF adapters, span confidence) are in :mod:`.parts`.
"""
