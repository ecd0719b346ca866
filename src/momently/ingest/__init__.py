"""Ingestion: the Segment-compatible HTTP Tracking API."""
