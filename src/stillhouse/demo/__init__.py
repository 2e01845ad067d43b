"""`stillhouse demo`: the whole road on bundled real data (NusaX sentiment, English).

The embedded LLM labels a training pool (:mod:`.steps`, cached in the workspace store), the audit
checks those labels, four students are trained (linear and int8 encoder, on the LLM's labels and
on the gold ones), everything is evaluated side by side with a cascade (student → LLM → abstain),
the task's [gate] is applied, the cascade is served over HTTP and asked a few questions
(:mod:`.serving`), and the review command for what it abstained on is printed. Each step is the
project's own function; :func:`run_demo` (:mod:`.run`) runs them from any step on, reusing the
earlier steps' outputs in the workspace (:mod:`.workspace`).
"""

from stillhouse.demo.run import DemoReport, StepDone, SystemRow, run_demo
from stillhouse.demo.workspace import STEPS, DemoSettings, DemoWorkspace, example_dir

__all__ = [
    "STEPS",
    "DemoReport",
    "DemoSettings",
    "DemoWorkspace",
    "StepDone",
    "SystemRow",
    "example_dir",
    "run_demo",
]
