"""Run reports: ``report.json`` for machines and a self-contained ``report.html`` for people."""
