"""The repair job: run the agent graph on a task's logs (``job``) and the naive baseline (``naive``)."""
