"""Consent and privacy rights: consent at send time, export, erasure with suppression,
and retention of raw events.

* :mod:`.consent` — the consent gate in front of every provider, and calling off
  the scheduled sends an opt-out makes moot;
* :mod:`.suppression` — keyed digests of erased identities, checked at ingestion;
* :mod:`.engine` — the ingest engine with the suppression check and privacy jobs run
  on the writer thread, between group commits;
* :mod:`.service` — export, erasure across every store, and retention;
* :mod:`.scrub` — making deleted rows unrecoverable from SQLite's files.
"""
