"""Access control: API keys (stored hashed), scopes and per-key rate limits.

``keys`` holds the key table (SQLite, ``keys.db`` in the data directory),
``ratelimit`` the token buckets, ``cli`` the ``momently keys`` command; the
FastAPI dependencies that enforce them live in :mod:`momently.web.auth`.
"""
