"""GPU attention kernels for headscope (issue 4): flash attention with fused statistics,
the column-statistics pass, block-sparse tables and in-kernel edits.

Which code serves a call (the ``"triton"`` backend's routes, :mod:`probe.kernels.backend`):

    =========================================  ==============================================
    call                                        runs
    =========================================  ==============================================
    not on CUDA, no Triton, a pattern, soft-    the reference (:mod:`probe.attention.reference`)
    capping, a fixed 4-D mask, span mass, ...
    no statistics, no edits                     PyTorch's SDPA
    CUDA, bf16/fp16/fp32, head dim <= 256       Triton K1 (:mod:`.triton_kernels`), then K2 for
    (<= 128 in fp32), any block table           per-key / per-tile statistics; head dims that
                                                are not a power of two in two column parts
    Hopper (sm_90), bf16/fp16, head dim 64 or   Gluon K1, warp-specialised (:mod:`.gluon.k1_ws`;
    128, 128x128 tiles, no look-back            :mod:`.gluon.k1` with ``HEADSCOPE_GLUON_WS=0``)
    Hopper, as above, 128-key blocks, no band   Gluon K2, warp-specialised (:mod:`.gluon.k2_ws`)
    one ACT key scaling                         K1 on values with the selected rows zeroed, then
                                                ACT's exact pass (:mod:`.act.row_pass`); column
                                                statistics through :mod:`.act.columns`
    block-sparse (:mod:`.sparse`)               K1 / K2 over the table on CUDA; on CPU the
                                                materialised reference over the expanded table
    =========================================  ==============================================

Public surface:
    blocks:         :class:`BlockTable` (FlexAttention-compatible), :class:`TokenRule`, builders.
    launch:         the entry points the backend calls: ``flash_forward`` (K1, row statistics,
                    edits) and ``column_stats`` (K2), with ``ActScale``, ``BandRows``; each
                    picks the Gluon kernel where it applies, else runs the Triton one.
    backend:        the ``"triton"`` attention backend and its dispatch rules (``ROUTES``).
    sparse:         ``block_sparse_attention`` on GPU (kernels) or CPU (expanded dense reference).
    materialised:   a plain materialised float64 reference of every statistic (tests, checks).

Implementations behind it:
    triton_kernels: the Triton kernels K1 and K2 (any CUDA GPU; Triton's CPU interpreter in tests).
    operands:       what every K1 / K2 launch prepares alike (``K1Result``, output buffers, key
                    bias in base 2, broadcast block tables).
    gluon/:         the Hopper kernels in Gluon and their launches (``k1_launch``, ``k2_launch``)
                    over 2-D row views and TMA descriptors (``views``).
    act/:           ACT's key scaling after K1: the output-row pass and the column statistics.

Imports go one way: backend -> launch -> (gluon launches, act, operands) -> kernels; nothing
imports the backend but the registry, by module name (``probe.attention.backends``).
Only ``blocks``, ``sparse``, ``materialised``, ``backend`` and ``gluon.views`` import without Triton.
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
