"""Token-conditioned metrics against attention weights computed by HF's eager attention."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from apps.heads_dashboard.head_metrics import (attention_between, attention_from, attention_to, conditioned_grid,
                                               conditioned_metric, hover_shading, resolve_position)
from probe.errors import InputError

PROMPT = "When Mary and John went to the store, John gave"


@pytest.fixture(scope="module")
def eager_patterns(tiny):
    """``[layer, head, q, k]`` of prompt 0 of ``pattern_record``, from an eager copy of the model."""
    model = copy.deepcopy(tiny.hf)
    model.set_attn_implementation("eager")
    ids = tiny.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model(input_ids=ids, output_attentions=True)
    return torch.stack([a[0] for a in out.attentions]).float()


def test_attention_between_is_the_pattern_entry(pattern_record, eager_patterns):
    q, k = -1, 2
    grid = conditioned_grid(pattern_record, 0, q, k)
    torch.testing.assert_close(grid, eager_patterns[:, :, -1, 2], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(attention_between(pattern_record, 1, 0, 5, 0), eager_patterns[1, :, 5, 0],
                               rtol=1e-4, atol=1e-6)


def test_conditioned_metric_has_the_registry_shape(pattern_record, eager_patterns):
    tokens = pattern_record.tokens[0]
    metric = conditioned_metric(-1, 3, tokens)
    assert metric.name == "attention_q-1_k3" and repr(tokens[3]) in metric.label
    stacked = torch.stack([metric.compute(pattern_record, layer, 0) for layer in pattern_record.layers])
    torch.testing.assert_close(stacked, eager_patterns[:, :, -1, 3], rtol=1e-4, atol=1e-6)


def test_rows_and_columns_for_hover(pattern_record, eager_patterns):
    row = attention_from(pattern_record, 0, 2, 4, 6)
    torch.testing.assert_close(row[:7], eager_patterns[2, 4, 6, :7], rtol=1e-4, atol=1e-6)
    assert torch.isnan(row[7:]).all()
    column = attention_to(pattern_record, 0, 2, 4, 3)
    torch.testing.assert_close(column[3:], eager_patterns[2, 4, 3:, 3], rtol=1e-4, atol=1e-6)
    assert torch.isnan(column[:3]).all()
    shading = hover_shading(pattern_record, 0, 2, 4, 3, "to")
    assert [colour for _, colour, _ in shading[:3]] == ["transparent"] * 3
    top = int(torch.nan_to_num(column, -1.0).argmax())
    assert shading[top][1].endswith("1.000)")
    assert math.isclose(shading[top][2], float(column[top]), rel_tol=1e-6)


@pytest.mark.parametrize("query, key, message", [
    (2, 5, "key 5 comes after query 2"),
    (40, 0, "the query position 40 does not exist"),
    (-1, -99, "the key position -99 does not exist"),
    (1.5, 0, "must be an integer"),
])
def test_bad_positions(pattern_record, query, key, message):
    with pytest.raises(InputError, match=message):
        attention_between(pattern_record, 0, 0, query, key)


def test_statistics_records_are_refused(stats_record):
    with pytest.raises(InputError, match="need full patterns"):
        conditioned_grid(stats_record, 0, -1, 0)
    with pytest.raises(InputError, match="'from' or 'to'"):
        hover_shading(stats_record, 0, 0, 0, 0, "across")


def test_resolve_position_counts_from_the_end():
    assert resolve_position(-1, 7, "query") == 6 and resolve_position(0, 7, "key") == 0
