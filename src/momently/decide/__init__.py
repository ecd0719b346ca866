"""Decide: arbitration across candidate actions, policies (the contextual bandit), constraints."""
