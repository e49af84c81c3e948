"""The cold-start job: a new task from a description and examples (``job``, ``policy``, ``report``)."""
