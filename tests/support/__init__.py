"""Helpers shared by unit and integration tests (a GitHub stand-in, ...)."""
