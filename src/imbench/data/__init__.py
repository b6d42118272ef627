"""Datasets (parsers of the on-disk formats) and tasks (labelled views of them)."""
