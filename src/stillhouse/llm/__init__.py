"""LLM backends, the embedded models, prompts, label scoring and the response cache."""
