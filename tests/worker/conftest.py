"""A real local Ray cluster for the `ray` agent kind's tests, started once per session on first use."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """The GCS address of a two-CPU local Ray instance (no dashboard) that this test process started
    and is connected to; it is shut down, with its workers, when the session ends."""
    import ray

    # Ray's graceful cancel is a SIGINT in the worker. A shell that starts the suite in the background
    # makes it ignore SIGINT, and the cluster's processes would inherit that; a handler is not inherited.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        context = ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        yield str(context.address_info["gcs_address"])
    finally:
        ray.shutdown()
