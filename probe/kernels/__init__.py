"""GPU attention kernels for headscope (issue 4): flash attention with fused statistics,
the column-statistics pass, block-sparse tables and in-kernel edits.

Modules:
    blocks:         :class:`BlockTable` (FlexAttention-compatible) and its builders.
    triton_kernels: the Triton kernels K1 (forward + row statistics + edits) and K2 (column pass).
    launch:         Python entry points of K1/K2 (``flash_forward``, ``column_stats``).
    sparse:         ``block_sparse_attention`` on GPU (kernels) or CPU (expanded dense reference).
    materialised:   a plain materialised float64 reference of every statistic (tests, checks).
    backend:        the ``"triton"`` attention backend and its dispatch rules.

Only ``blocks``, ``sparse``, ``materialised`` and ``backend`` import without Triton.
"""

from probe.kernels.blocks import (
    BlockTable as BlockTable,
    TokenRule as TokenRule,
    block_list_table as block_list_table,
    dense_table as dense_table,
    sink_local_table as sink_local_table,
    sliding_window_table as sliding_window_table,
    topk_table as topk_table,
)
from probe.kernels.sparse import block_sparse_attention as block_sparse_attention
