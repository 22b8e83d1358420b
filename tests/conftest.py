import os
import sys

import pytest
import torch
from hypothesis import HealthCheck, settings

from asap.data import create_datamodule
from asap.models import create_model


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """One data folder per test session, so each real wheel is downloaded at most once."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session", autouse=True)
def _wandb_in_scratch(tmp_path_factory):
    """W&B runs that tests write (offline) land in a scratch folder, never in the checkout."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ["WANDB_DIR"] = str(tmp_path_factory.mktemp("wandb"))


@pytest.fixture(autouse=True)
def _wandb_torn_down():
    """wandb keeps one process-wide setup, made with the environment (WANDB_DIR) of the first run: each test
    starts from none, so that its runs land where it says and are flushed when it ends."""
    yield
    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def random_padding(batch: int, n: int, min_valid: int = 2, seed: int = 0) -> torch.Tensor:
    """(batch, n) booleans with a random number (>= min_valid) of leading valid tokens; row 0 unpadded."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_valid, n + 1, (batch,), generator=generator)
    lengths[0] = n
    return torch.arange(n) < lengths[:, None]


def make_attention(normaliser: str, dim: int, heads: int, qkv_bias: bool = False, **options):
    """An ``asap.nn.Attention`` layer; an ASAP layer gets a random dual map and is marked calibrated."""
    from asap.nn import Attention

    layer = Attention(dim, num_heads=heads, qkv_bias=qkv_bias, normaliser=normaliser, normaliser_options=options)
    if normaliser == "asap":
        torch.nn.init.normal_(layer.normaliser.dual_map.weight, std=0.3)
        layer.normaliser.calibrated.fill_(True)
    return layer


N_ITERS = 3
TEACHER = {
    "name": "vit",
    "image_size": 28,
    "in_chans": 1,
    "num_classes": 10,
    "attention": "sinkhorn",
    "attention_options": {"n_iters": N_ITERS},
    "patch_size": 7,
    "embed_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "global_pool": "avg",
}


@pytest.fixture(scope="session")
def mnist(data_dir):
    datamodule = create_datamodule(
        "mnist", data_dir=data_dir, batch_size=64, train_size=6400, val_size=640, test_size=640
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


@pytest.fixture(scope="session")
def teacher(mnist):
    """A tiny Sinkhorn ViT trained for three epochs on 6,400 MNIST digits (seconds on a CPU)."""
    torch.manual_seed(0)
    model = create_model(**TEACHER)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(3):
        for images, labels in mnist.train_dataloader():
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(images), labels).backward()
            optimiser.step()
    return model.eval()


# Property tests (tests/test_properties.py): CI runs a fixed, bounded set of examples; HYPOTHESIS_PROFILE=long
# draws many more, at random.
settings.register_profile(
    "ci", derandomize=True, database=None, max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("long", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
