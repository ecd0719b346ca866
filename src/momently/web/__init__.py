"""The HTTP surface: admin API (and later the dashboard) around the engine."""
