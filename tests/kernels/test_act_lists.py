"""ACT's key lists and the zeroing of value rows around K1 (CPU; the pass itself is tested with
the kernels in test_triton_kernels.py and, in bf16 on Hopper, in test_gluon_k1.py)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from probe.kernels.act.row_pass import act_lists, rows_zeroed  # noqa: E402


def _selection() -> torch.Tensor:
    selected = torch.zeros(2, 4, 7, dtype=torch.bool)  # 4 query heads over 2 KV heads
    selected[0, 1, 3] = selected[0, 1, 5] = selected[1, 2, 0] = True
    selected[0, 0, 5] = True
    return selected


def test_lists_hold_the_group_union_and_flag_each_heads_own_keys():
    lists = act_lists(_selection(), torch.tensor([0.1, 0.2, 0.3, 0.4]), 2, 4, 2, "cpu")
    assert lists.count.tolist() == [[2, 2, 0, 0], [0, 0, 1, 1]]
    assert lists.keys.shape[-1] % 16 == 0 and lists.keys[0, 0, :3].tolist() == [3, 5, -1]
    assert lists.mine[0, 0, :2].tolist() == [0.0, 1.0] and lists.mine[0, 1, :2].tolist() == [1.0, 1.0]
    assert lists.mine[1, 3, 0].item() == 0.0 and lists.mine[1, 2, 0].item() == 1.0
    assert [r.tolist() for r in lists.zero_rows] == [[0, 0, 1], [0, 0, 1], [3, 5, 0]]


def test_rows_zeroed_in_place_restores_the_callers_values():
    value = torch.randn(2, 2, 7, 4)
    before = value.clone()
    rows = act_lists(_selection(), torch.ones(4), 2, 4, 2, "cpu").zero_rows
    with rows_zeroed(value, rows, torch.randn(2, 4, 7, 4)) as inside:
        assert inside.data_ptr() == value.data_ptr()  # no copy
        assert inside[0, 0, 3].abs().sum() == 0 and inside[1, 1, 0].abs().sum() == 0
        assert torch.equal(inside[0, 1], before[0, 1])
    assert torch.equal(value, before)


def test_rows_zeroed_restores_after_an_error():
    value = torch.randn(2, 2, 7, 4)
    before = value.clone()
    rows = act_lists(_selection(), torch.ones(4), 2, 4, 2, "cpu").zero_rows
    with pytest.raises(RuntimeError, match="boom"):
        with rows_zeroed(value, rows):
            raise RuntimeError("boom")
    assert torch.equal(value, before)


@pytest.mark.parametrize("case", ["aliases_key", "broadcast", "requires_grad"])
def test_rows_zeroed_copies_when_editing_in_place_is_unsafe(case):
    base = torch.randn(2, 2, 7, 4)
    key = base
    value = {"aliases_key": base[:, :, :, :4], "broadcast": base[:1].expand(2, 2, 7, 4),
             "requires_grad": base.clone().requires_grad_()}[case]
    before = value.detach().clone()
    rows = act_lists(_selection(), torch.ones(4), 2, 4, 2, "cpu").zero_rows
    with rows_zeroed(value, rows, key) as inside:
        assert inside.data_ptr() != value.data_ptr()
        assert inside[0, 0, 3].abs().sum() == 0 and torch.equal(inside[0, 1], before[0, 1])
    assert torch.equal(value.detach(), before)
