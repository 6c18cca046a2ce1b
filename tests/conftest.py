"""Shared pytest setup for the ift_lib unit tests: CPU only, float64.

Kept deliberately small; the browser tests have their own conftest in tests/browser/.
"""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (must come after JAX_PLATFORMS is set)

jax.config.update("jax_enable_x64", True)
