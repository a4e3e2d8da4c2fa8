"""Bad-input rows: edits (probe.edits) and the dashboard's edit settings."""

from __future__ import annotations

import math

from apps.heads_dashboard.settings import EditSettings, parse_heads
from probe import capture
from probe.edits import (BiasKeys, BoostKeys, ImageKeys, ImagePatches, Positions, ScaleHeads, ScaleKeys, Sinks,
                         act_calibration, apply_edits)
from tests.bad_inputs.table import Case, api


def _apply(env, edits) -> None:
    with apply_edits(env.tiny, edits):
        capture(env.tiny, ["Hello there", "Hi"])


CASES: list[Case] = [
    api("edit-scale-heads-nan", lambda env: ScaleHeads(math.nan), "finite"),
    api("edit-scale-heads-inf", lambda env: ScaleHeads(math.inf, layers=[1]), "finite"),
    api("edit-scale-heads-huge", lambda env: ScaleHeads(1e308), "magnitude"),
    api("edit-scale-heads-string", lambda env: ScaleHeads("x"), "number"),
    api("edit-bias-minus-inf", lambda env: BiasKeys(Positions([0, 1, 2]), -math.inf), "finite"),
    api("edit-bias-nan", lambda env: BiasKeys(Positions([0]), math.nan), "finite"),
    api("edit-bias-on-sinks", lambda env: BiasKeys(Sinks(), 1.0), "Positions"),
    api("edit-scale-keys-above-one", lambda env: ScaleKeys(Positions([0]), 1.5), "[0, 1]"),
    api("edit-scale-keys-nan", lambda env: ScaleKeys(Positions([0]), math.nan), "finite"),
    api("edit-scale-keys-bad-keys", lambda env: ScaleKeys("first", 0.5), "Positions"),
    api("edit-float-layer", lambda env: ScaleHeads(2.0, layers=[1.5]), "integers"),
    api("edit-empty-layers", lambda env: ScaleHeads(2.0, layers=[]), "empty"),
    api("edit-no-positions", lambda env: Positions([]), "at least one"),
    api("edit-negative-prompt", lambda env: ScaleHeads(0.0, prompts=[-1]), "prompts"),
    api("edit-act-beta", lambda env: act_calibration(beta=2.0), "beta"),
    api("edit-act-tau", lambda env: act_calibration(tau=1.5), "tau"),
    api("edit-act-tau-string", lambda env: act_calibration(tau="x"), "tau"),
    api("apply-not-an-edit", lambda env: _apply(env, ["x"]), "not an edit"),
    api("apply-single-edit-not-list", lambda env: _apply(env, ScaleHeads(2.0)), "list"),
    api("apply-layer-out-of-range", lambda env: _apply(env, [ScaleHeads(2.0, layers=[99])]), "layer 99"),
    api("apply-head-out-of-range", lambda env: _apply(env, [ScaleHeads(2.0, heads=[99])]), "head 99"),
    api("apply-prompt-past-batch", lambda env: _apply(env, [ScaleHeads(0.0, prompts=[5])]), "prompt 5"),
    api("edit-boost-alpha-nan", lambda env: BoostKeys(ImageKeys(), math.nan), "finite"),
    api("edit-boost-alpha-inf", lambda env: BoostKeys(Positions([0]), math.inf), "finite"),
    api("edit-boost-alpha-negative", lambda env: BoostKeys(ImageKeys(), -0.5), ">= 0"),
    api("edit-boost-rows-not-last", lambda env: BoostKeys(ImageKeys(), 0.7, rows="all"), "last"),
    api("edit-boost-on-sinks", lambda env: BoostKeys(Sinks(), 0.7), "ImagePatches"),
    api("edit-image-patches-negative", lambda env: ImagePatches([[0, -1]]), "negative"),
    api("edit-image-patches-flat", lambda env: ImagePatches([0, 1]), "per prompt"),
    api("apply-boost-patches-on-text-model", lambda env: _apply(env, [BoostKeys(ImagePatches([[0], [1]]), 0.7)]),
        "image-token id"),
    api("dashboard-factor-nan", lambda env: EditSettings.from_ui(None, "1.2", math.nan), "finite"),
    api("dashboard-factor-huge", lambda env: EditSettings.from_ui(None, "1.2", 1e308), "magnitude"),
    api("dashboard-bad-head-list", lambda env: parse_heads("3-4"), "cannot read head"),
]
