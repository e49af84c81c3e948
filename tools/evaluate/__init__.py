"""Evaluation: scoring model outputs against expected answers."""
