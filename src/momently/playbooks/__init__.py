"""Playbooks shipped with momently (package data)."""
