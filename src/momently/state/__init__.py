"""Per-customer state: profiles now; windows, counters and journeys later."""
