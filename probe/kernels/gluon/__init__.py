"""The Hopper (sm_90) kernels in Gluon: K1 and K2 with explicit asynchronous wgmma and warp specialisation.

Modules:
    k1:         the single-partition K1 and the device helpers both K1s (and the K2) share.
    k1_ws:      the warp-specialised K1 (producer warp + two consumer warpgroups), the default.
    k2_ws:      the warp-specialised K2 (column statistics).
    k1_launch:  eligibility, bias operands and launch of the K1s (:func:`~.k1_launch.flash_forward_gluon`).
    k2_launch:  eligibility, the table walk and launch of the K2 (:func:`~.k2_launch.column_stats_gluon`).
    views:      2-D row views of ``[batch, head, token, d]`` operands and their TMA descriptors.

:mod:`probe.kernels.launch` dispatches here when a call is eligible; nothing here imports it back.
"""
