"""What the dashboard shows, as JSON-able dicts: every page renders one of these, and ``/api/…`` returns it as is.

Reads go through :class:`kaizen.tools.store.Store` (short transactions) and the run directories
(``report.json``, ``diagnosis.json``, ``iter-N/job/metrics.jsonl``, ``evals/*.json``). Everything is read
defensively: the store's schema and the reports gain fields while kaizen grows, a live run has only some
of its artifacts, and an older run lacks newer keys — a missing key shows as "n/a", never as an error.

Each page's reads live in their own module — ``tasks``, ``runs``, ``traces``, ``versions`` — on top of
``base`` (tasks, run directories, a run in one line) and ``common`` (defensive JSON helpers);
``Reader`` is all of them together. No SQL here: the store answers (``Store.verdict_counts``,
``Store.browse_traces`` …), so the dashboard cannot diverge from the rules the store keeps.

The UI's store connections are read-only (``Store.open_read_only``): SQLite in WAL mode lets a running
repair or tick write while the dashboard reads, and ``PRAGMA query_only`` guarantees the dashboard itself
never takes the write lock.
"""

from __future__ import annotations

from kaizen.workflows.ui.runs import RunsView
from kaizen.workflows.ui.tasks import TasksView
from kaizen.workflows.ui.traces import TracesView
from kaizen.workflows.ui.versions import VersionsView


class Reader(TasksView, RunsView, TracesView, VersionsView):
    """The dashboard's read model over one workspace's store and artifacts."""
