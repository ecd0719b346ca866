"""Synthetic customers and scenarios: a population whose truth is known.

The simulator draws customers with personas, devices, places, routines and
hidden needs (:class:`Population`), lets them live in simulated time emitting
Segment messages (:class:`World`), answers messages from their hidden truth
(:meth:`World.deliver`), and runs policies against a holdout
(:func:`run_policy`, :func:`compare`) for an HTML report (:func:`write_report`).

>>> world = World(Population(10, seed=1))
>>> first = next(world.events_until(world.start_ms + DAY))
>>> first["type"] in {"track", "identify", "page", "screen"}
True
"""

from momently.simulate.baselines import BatchAndBlast, EventTriggers, NoMessages, Oracle
from momently.simulate.catalog import EXAMPLE_OFFERS, Catalog, Place, load_places
from momently.simulate.compare import RunResult, compare, in_holdout, run_policy, true_effect
from momently.simulate.events import to_event
from momently.simulate.needs import NEEDS, NeedSpec
from momently.simulate.personas import PERSONAS, Persona
from momently.simulate.population import Customer, Device, Population
from momently.simulate.report import render, write_report
from momently.simulate.respond import ANY, Response, Send, respond
from momently.simulate.simtime import DAY, HOUR, MINUTE, START
from momently.simulate.stats import Lift, lift
from momently.simulate.types import Message, Policy
from momently.simulate.world import World

__all__ = [
    "ANY",
    "DAY",
    "EXAMPLE_OFFERS",
    "HOUR",
    "MINUTE",
    "NEEDS",
    "PERSONAS",
    "START",
    "BatchAndBlast",
    "Catalog",
    "Customer",
    "Device",
    "EventTriggers",
    "Lift",
    "Message",
    "NeedSpec",
    "NoMessages",
    "Oracle",
    "Persona",
    "Place",
    "Policy",
    "Population",
    "Response",
    "RunResult",
    "Send",
    "World",
    "compare",
    "in_holdout",
    "lift",
    "load_places",
    "render",
    "respond",
    "run_policy",
    "to_event",
    "true_effect",
    "write_report",
]
