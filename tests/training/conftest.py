import pytest


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """Random tiny foundation models written once per session in the real layouts."""
    from vdit.testing import build_tiny_foundation

    return build_tiny_foundation(tmp_path_factory.mktemp("tiny_foundation"), seed=0)
