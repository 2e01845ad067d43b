"""LLM runtimes, one module each (``llamacpp``, ``openai``): each registers an opener under its
name in :data:`stillhouse.registry.backends`, and :func:`stillhouse.llm.backend.open_backend`
finds it there by the model spec, so a new runtime is a new module here and no edit elsewhere.
"""
