import os
import sys

import pytest

# the tests import the package and the two scripts from the project folder
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyimagesearch import synthetic  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory):
    """A small generated dataset shared (read-only) by the tests."""
    return synthetic.write_dataset(str(tmp_path_factory.mktemp("synthetic")), 160, seed=7)
