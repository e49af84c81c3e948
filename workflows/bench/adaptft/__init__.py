"""``kaizen bench adaptft``: does the agent (triage + gate + rollback) beat naive retraining as the
feedback gets more poisoned? AdaptFT-Bench's staged protocol, run for real on kaizen's own tools.

The parts. What data each stage and each arm sees is pure, seeded and free of the ML stack, so it is
unit-tested on its own and a rerun with the same seed feeds both arms exactly the same inputs:
``scenarios`` (CLINC150 banking, GSM8K), ``stages`` (stage batches, the 70/30 split, the held-out set,
scoring helpers) and ``feedback`` (each arm's feedback and the log records it ingests). What runs models
and workspaces: ``prepare`` (presets, the request check, the base model, v1 and the arms' workspaces),
``scorer`` (versions run on the held-out set), ``arms`` (one stage for the three arms: deploy, repair or
retrain, score), ``run`` (``bench_adaptft``: the stages in turn, the results; its docstring tells the
whole protocol) and ``plot``.
"""
