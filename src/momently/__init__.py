"""momently: a real-time micro-moment engine for brands."""

__version__ = "0.1.0"
