"""Fixtures shared by the whole suite: the local Wolkvox simulator and a distinctive token."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from importer.simulator import SimConfig, Simulator


@pytest.fixture
def sim_token() -> str:
    """A token no test output would contain by chance: search reports and logs for it."""
    return "wvtok-7Qz3-DISTINCTIVE-c0ffee-91x"


@pytest.fixture
def simulator() -> Iterator[Callable[..., Simulator]]:
    """``start_sim(**SimConfig fields)`` -> a started simulator on a free loopback port.

    >>> sim = start_sim(token=sim_token, faults=Faults(error_5xx_rate=1.0))

    Every simulator started is stopped at teardown (its temporary list removed).
    """
    started: list[Simulator] = []

    def start_sim(**fields: Any) -> Simulator:
        sim = Simulator(SimConfig(**fields))
        started.append(sim)
        return sim.start()

    yield start_sim
    for sim in started:
        sim.stop()
