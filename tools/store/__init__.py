"""The store: SQLModel tables and the repository API (``Store``) over SQLite or any SQLAlchemy URL."""

from kaizen.tools.store.repo import ImportStats, Store, TraceView

__all__ = ["ImportStats", "Store", "TraceView"]
