"""The scheduled loop: ``kaizen tick`` / ``watch`` (``job``), cursor ingestion (``ingest``), trigger policy (``policy``)."""
