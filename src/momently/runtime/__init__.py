"""Runners: the embedded single-process runtime."""
