"""Evaluation: metrics with intervals (the holistic report grows here)."""
