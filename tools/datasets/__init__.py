"""Building the repair data sets from labelled traces: held-out suites first, then training data.

Order matters. A **final** slice of all trusted traces is set aside first: it is never trained on and
never used to choose anything until it verifies the last candidate (the refit). The target-eval slice
(failures) come next and are never trained on *inside the loop*; the regression set (passes) is never
trained on at all. Training data is built from what is left and decontaminated against every eval set.
Traces with an inferred label (the triage's, never the feedback's) join training only. After the loop, the
refit trains on all the rest — the target traces included, they have done their job of choosing — and is
verified against production on the regression suite and the final slice. Every item records why it is in
(``metadata.reason``).

The parts: ``splits`` (the data roles: the final slice, target-eval, regression, the replay pool, the
target's top-up) and ``training`` (the loop's training set, the refit's, and what both do to their data:
dedupe, decontaminate, balance).
"""
