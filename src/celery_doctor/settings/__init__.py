"""Celery settings: static reader, effective reader, per-release data, migrate."""
