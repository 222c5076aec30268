"""Fuzz targets (run as scripts; a small run of each is part of the unit tests)."""
