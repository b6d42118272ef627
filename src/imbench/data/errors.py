"""The data layer's two error types (each one line, naming the file, row or member)."""

from __future__ import annotations


class DatasetError(ValueError):
    """Raised when a dataset file does not have the expected content."""


class DownloadError(DatasetError):
    """A download, checksum, archive or content check failed (one line, naming what and where)."""
