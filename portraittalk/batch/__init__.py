"""Batch rendering: a JOBS file in, one folder per job out, on this machine or a Ray cluster."""

from .runner import BatchOptions, run

__all__ = ["BatchOptions", "run"]
