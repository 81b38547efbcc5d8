"""Fixtures the hardening tests share with others."""

from tests.serverkit import served  # noqa: F401  (fixture: a real `mse serve` process)
