"""`stillhouse monitor`: the prediction log of a served system against a baseline.

One module per job: :mod:`~stillhouse.monitor.window` (which logged predictions),
:mod:`~stillhouse.monitor.baseline` (what they are compared with), :mod:`~stillhouse.monitor.drift`
(label, confidence, length and language shift), :mod:`~stillhouse.monitor.accuracy` (accuracy
estimated from calibrated confidences), :mod:`~stillhouse.monitor.rates` (abstention, fallback,
latency, over time), :mod:`~stillhouse.monitor.report` (monitor.json), :mod:`~stillhouse.monitor.html`
(monitor.html) and :mod:`~stillhouse.monitor.run` (all of it).
"""
