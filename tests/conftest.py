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


@pytest.fixture
def run_stopped_during_epoch():
    """``run(argv, number)``: train.main(argv) stopped during epoch ``number``
    as Ctrl-C would stop it; returns the SystemExit it ended with."""
    import train
    from pyimagesearch import trainer

    def run(argv, number):
        real_epoch, calls = trainer.train_one_epoch, []

        def interrupted(*args, **kwargs):
            calls.append(1)
            if len(calls) == number:
                raise KeyboardInterrupt
            return real_epoch(*args, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(trainer, "train_one_epoch", interrupted)
            with pytest.raises(SystemExit) as exit_info:
                train.main(argv)
        return exit_info.value
    return run
