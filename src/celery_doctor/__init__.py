"""celery-doctor: why Celery workers lose their broker connection, and proof of the fix."""

__version__ = "0.1.0"
