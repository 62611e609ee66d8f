"""tensor_on_device: the values of torch.tensor, made from fills (no host-to-device copy)."""
import pytest
import torch

from vdit.engine.syncs import SyncCounter
from vdit.models.ops.device_values import tensor_on_device


@pytest.mark.parametrize("values,dtype", [
    ([[46, 80], [23, 40], [12, 20], [6, 10]], torch.long),  # spatial shapes
    ([0, 3680, 4600, 4840], torch.long),  # level start indices
    ([0.48145466, 0.4578275, 0.40821073], torch.float32),  # CLIP mean: rounded to float32 as torch.tensor does
    ([0.48145466, 0.4578275, 0.40821073], torch.bfloat16),
    ([1e-40, -0.0, 3.0], torch.float16),
])
def test_same_values_as_torch_tensor(values, dtype):
    want = torch.tensor(values, dtype=dtype)
    got = tensor_on_device(values, dtype, "cpu", fill=True)
    assert got.dtype == dtype and got.shape == want.shape
    assert torch.equal(got, want) and torch.equal(got.signbit(), want.signbit())


def test_fills_copy_nothing_from_the_host():
    with SyncCounter(cpu_is_device=True) as syncs:
        tensor_on_device([[46, 80], [23, 40]], torch.long, "cpu", fill=True)
    assert syncs.count == 0, syncs.summary()


def test_empty_and_meta():
    assert tensor_on_device([], torch.long, "cpu", fill=True).shape == (0,)
    assert tensor_on_device([[1, 2]], torch.long, "meta").shape == (1, 2)


def test_uploaded_once_makes_each_table_once_per_key():
    from vdit.models.ops.device_values import uploaded_once

    made = []

    def make():
        made.append(1)
        return torch.arange(3), torch.ones(2)

    first = uploaded_once(("test-table", 3), "cpu", make)
    again = uploaded_once(("test-table", 3), "cpu", make)
    other = uploaded_once(("test-table", 4), "cpu", make)
    assert len(made) == 2 and again is first and other is not first
    assert torch.equal(first[0], torch.arange(3)) and torch.equal(first[1], torch.ones(2))
