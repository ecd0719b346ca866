"""Micro-moments: playbook, moment definitions, detectors and journeys."""
