"""Measure what decisions earned: off-policy evaluation of policies on logged decisions."""
