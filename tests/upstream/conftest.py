"""Fixtures for the client tests live in tests/simulator_fixtures.py."""

from tests.simulator_fixtures import client, policy, session, sim_state, simulator, sleep  # noqa: F401
