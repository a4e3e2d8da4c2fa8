"""Attention math: the statistics/edit contract, lazy masks, backends, the HF hook."""

from probe.attention.backends import available_backends as available_backends
from probe.attention.backends import get_backend as get_backend
from probe.attention.backends import register_backend as register_backend
from probe.attention.mask import LazyMask as LazyMask
from probe.attention.reference import reference_attention as reference_attention
from probe.attention.spec import AttentionOutput as AttentionOutput
from probe.attention.spec import KeyScale as KeyScale
from probe.attention.spec import LayerEdit as LayerEdit
from probe.attention.spec import SinkRule as SinkRule
from probe.attention.spec import StatRequest as StatRequest
