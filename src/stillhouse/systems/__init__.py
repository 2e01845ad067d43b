"""What ``--system NAME=SOURCE:VALUE`` may name as SOURCE, one module each (``preds``, ``model``,
``llm``, ``cascade``, ``by-lang``). Each registers itself under its name in
:data:`stillhouse.registry.system_sources`: a :class:`stillhouse.predictors.SystemSource` that
checks its VALUE before anything is opened and opens it as a Predictor. A new kind of system is a
new module here, with no edit elsewhere.
"""
