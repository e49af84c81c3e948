"""The jobs users run end to end (repair, cold start, schedule, bench) and the ``kaizen`` CLI."""
