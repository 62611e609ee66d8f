import pytest


@pytest.fixture(scope="session")
def tiny_foundation(tiny_root):
    from vdit.config import tiny_config
    from vdit.models.foundation import load_foundation

    return load_foundation(tiny_config(tiny_root).foundation)
