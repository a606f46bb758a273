"""Test-suite setup: the actlab layers run eager math unless a test asks for another backend.

The library default backend is ``"auto"`` (compile once a configuration has done enough eager
work, :mod:`actlab.functional.backends`); the tests pin ``"eager"`` so that no test pays a
compilation it did not ask for and stored-key tests see the keys of eager cells. Set here, before
any test module imports actlab, so that spawned workers inherit it too. Tests of ``"auto"`` and
``"compiled"`` select them with ``backends.backend(...)``.
"""

import os

os.environ["ACTLAB_BACKEND"] = "eager"


import pytest  # noqa: E402 - after the environment variable, before any actlab import


@pytest.fixture(params=["native", "inductor"])
def kernels(request: pytest.FixtureRequest):
    """Run a compiled-backend test twice: with the native CPU kernels of SAU and ASH (where they
    cover the call, :mod:`actlab.functional.native`) and with ``torch.compile`` kernels only."""
    from actlab.functional import native

    if request.param == "inductor":
        with native.disabled():
            yield request.param
    else:
        yield request.param
