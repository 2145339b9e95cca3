"""A local, faithful stand-in for the upstream video API (API.md), for tests, development and demos."""

from __future__ import annotations

from bot.simulator.app import Simulator, make_simulator_app, run_simulator
from bot.simulator.state import ERRORS, FAULT_KINDS, Fault, SimClock, SimulatorState

__all__ = ["ERRORS", "FAULT_KINDS", "Fault", "SimClock", "Simulator", "SimulatorState", "make_simulator_app",
           "run_simulator"]
