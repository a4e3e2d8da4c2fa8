"""Head spans, head roles, WAAD, FAI and token entropy of reasoning traces.

Context:
    Li et al., "Attention Illuminates LLM Reasoning: The Preplan-and-Anchor Rhythm Enables
    Fine-Grained Policy Optimization" (arXiv 2510.13554, section 4; methods dossier section d)
    read two signals off the attention of a response R:

    - head span (Eq. 7): ``d(l, h) = (1/|R|) sum_{t in R} sum_{s <= t} A[t, s] (t - s)``; the
      heads are sorted by span, the bottom 30% are *local*, the top 30% *global* (Eq. 8), and
      each group's maps are averaged into ``A_loc`` and ``A_glob``;
    - WAAD (Def. 4.1): ``WAAD_t = sum_{s <= t} A_loc[t, s] min(t - s, W)``, W = 10;
    - FAI (Def. 4.2): ``FAI_s = (1/|T(s)|) sum_{t in T(s)} A_glob[t, s]`` with
      ``T(s) = {t in R : s + H_lo <= t <= min(N, s + H_hi)}`` (RL: 10 and 100; section 4: to
      the end of the response);
    - token entropy ``H_t = -sum_v p(v | .) log p(v | .)``.

    WAAD and FAI are linear in the attention map, so the group averages are averages of per-head
    statistics that :mod:`probe.attention.spec` computes block by block, without a seq x seq
    matrix: ``lookback`` (WAAD's term), ``band_sum`` / ``band_count`` (FAI's) and ``distance``
    (the span). The analysis is one statistics-mode capture, then :func:`rhythm_metrics`.

    For FAI, ``|T(s)|`` is the same for every head (it depends on positions only), so the mean
    over the global heads of the per-head banded means equals the banded mean of the group-mean
    map: ``(1/G) sum_h (1/|T|) sum_t A_h[t, s] = (1/|T|) sum_t (1/G) sum_h A_h[t, s]``.

Alignment (teacher forcing):
    Every metric is indexed by the response token's own position ``s`` (index ``s -
    response_start`` in the returned vectors): WAAD and the head span read the token's own
    attention *row*, FAI the token's own *column* ("rows corresponding to response tokens").
    Token entropy is that of the distribution the token was drawn from, i.e. the logits of the
    row that *predicts* it, row ``s - 1``. This matches :mod:`circuits.rhythm.traces`
    (``response_rows`` and ``predicting_rows``).

NaN handling:
    FAI is NaN where ``T(s)`` is empty (the last ``H_lo`` response tokens): there the mean is
    undefined, and 0 would read as "no attention received". WAAD, spans and entropy are finite
    on every response token; a NaN there (a damaged record) is an error.

Example:
    >>> from probe import capture
    >>> from circuits.rhythm.metrics import RhythmConfig, rhythm_config_capture, rhythm_metrics
    >>> config = RhythmConfig(band_hi=None)                 # section 4: band to the end
    >>> texts = [prompt + response for prompt, response in pairs]
    >>> starts = [len(model.tokenizer(prompt)["input_ids"]) for prompt, _ in pairs]
    >>> record = capture(model, texts, rhythm_config_capture(config, starts))
    >>> rhythms = rhythm_metrics(record, starts, config, model=model)
    >>> rhythms[0].waad, rhythms[0].fai, rhythms[0].roles.global_heads

    (Check that the tokens of ``prompt + response`` start with the prompt's own tokens; a
    tokenizer may merge tokens across the boundary. ``record.tokens`` shows what was read.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from numbers import Real
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from probe.capture import AttentionRecord, CaptureConfig
from probe.models import LoadedModel

Head = tuple[int, int]
"""A head as ``(layer, head)``."""

RHYTHM_STATS = ("distance", "lookback", "band_sum", "band_count")
"""The statistics :func:`rhythm_metrics` reads from a record."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class RhythmConfig:
    """The parameters of the rhythm metrics (defaults: the paper's RL setting).

    Attributes:
        window: W of WAAD, an integer >= 1 (paper: 10).
        band_lo: H_lo, the smallest look-ahead of FAI's band, an integer >= 0 (paper: 10).
        band_hi: H_hi, the largest look-ahead, an integer >= ``band_lo``, or None: to the end of
            the response (the paper's section 4 analysis). Paper RL: 100.
        local_fraction: share of heads, by increasing span, that form the local group (0.3).
        global_fraction: share of heads, by decreasing span, that form the global group (0.3).
            Group sizes are ``round(fraction x heads)``, at least one head; the groups must not
            overlap.
        receiver_fraction: share of heads, by decreasing kurtosis of their banded column means,
            taken as "receiver heads" for the co-occurrence coupling (an approximation of
            Bogdan et al.'s receiver heads; see :func:`receiver_heads`).
        receivers_outside_global: choose the receiver heads among the heads outside the global
            group (default), so that the co-occurrence coupling does not partly compare the
            global FAI with itself; False ranks every head (the paper does not say which).
        layers: layers whose heads are ranked (non-negative indices; None: every recorded
            layer). :func:`paper_rl_layers` gives the paper's RL choice.
        backend: the attention backend of the capture: ``"reference"`` (CPU or GPU, plain
            PyTorch) or ``"triton"`` (the GPU kernels, :mod:`probe.kernels`).
    """

    window: int = 10
    band_lo: int = 10
    band_hi: int | None = 100
    local_fraction: float = 0.3
    global_fraction: float = 0.3
    receiver_fraction: float = 0.1
    receivers_outside_global: bool = True
    layers: tuple[int, ...] | None = None
    backend: str = "reference"

    def __post_init__(self) -> None:
        if not _is_int(self.window) or self.window < 1:
            raise ValueError(f"window (WAAD's W) must be an integer >= 1, got {self.window!r}; the paper uses 10")
        if not _is_int(self.band_lo) or self.band_lo < 0:
            raise ValueError(f"band_lo (FAI's H_lo) must be an integer >= 0, got {self.band_lo!r}; the paper uses 10")
        if self.band_hi is not None and (not _is_int(self.band_hi) or self.band_hi < self.band_lo):
            raise ValueError(f"band_hi (FAI's H_hi) must be an integer >= band_lo={self.band_lo}, or None for "
                             f"'to the end of the response'; got {self.band_hi!r} (the paper's RL value is 100)")
        for name in ("local_fraction", "global_fraction", "receiver_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
        if self.local_fraction + self.global_fraction > 1.0:
            raise ValueError(f"local_fraction + global_fraction must be <= 1 (the groups may not overlap), got "
                             f"{self.local_fraction} + {self.global_fraction}")
        if self.layers is not None:
            layers = tuple(self.layers)
            if not layers or not all(_is_int(v) and v >= 0 for v in layers):
                raise ValueError(f"layers must be non-negative layer indices, or None for every recorded layer; got "
                                 f"{self.layers!r} (paper_rl_layers(n_layers) gives the paper's choice)")
            object.__setattr__(self, "layers", tuple(sorted(set(layers))))


def paper_rl_layers(n_layers: int) -> tuple[int, ...]:
    """The paper's RL layers: 5 evenly spaced layers in ``floor(L/3) .. floor(2L/3)``.

    Context:
        Li et al. section 5 take attention from these middle layers (appendix B.2: they beat
        all, top and bottom layers). Positions are rounded half up; on models with fewer than
        5 candidate layers the duplicates collapse.

    Example:
        >>> paper_rl_layers(36)
        (12, 15, 18, 21, 24)
    """
    if not _is_int(n_layers) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive integer, got {n_layers!r}")
    lo, hi = n_layers // 3, (2 * n_layers) // 3
    picks = (math.floor(lo + (hi - lo) * i / 4 + 0.5) for i in range(5))
    return tuple(dict.fromkeys(picks))


def rhythm_config_capture(config: RhythmConfig, response_starts: Sequence[int]) -> CaptureConfig:
    """Statistics-mode capture settings that record what :func:`rhythm_metrics` needs.

    Args:
        config: the rhythm parameters.
        response_starts: per prompt, the position of its first response token, counted from
            its first real token (the prompt's length in tokens, special tokens included).

    Returns:
        A :class:`~probe.capture.CaptureConfig` with ``distance``, ``lookback`` (window W) and
        the band statistics (``band_lo``, ``band_hi``, first rows at the response starts), and
        none of the other statistics.
    """
    starts = _checked_starts(response_starts)
    return CaptureConfig(mode="stats", layers=config.layers, received=False, entropy=False, distance=True,
                         first_token=False, lookback_window=config.window, band_lo=config.band_lo,
                         band_hi=config.band_hi, band_first_rows=starts, backend=config.backend)


@dataclass(frozen=True)
class HeadRoles:
    """The heads a trace's metrics averaged.

    Attributes:
        layers: the ranked layers, in the order of ``spans``' first axis.
        spans: ``[layer, head]`` head span ``d(l, h)`` in tokens (Eq. 7).
        local_heads: ``(layer, head)`` of the local group, by increasing span.
        global_heads: the global group, by decreasing span.
        receiver_heads: the receiver-head approximation, by decreasing kurtosis (empty when not
            computed).
    """

    layers: tuple[int, ...]
    spans: Float[Tensor, "layer head"]
    local_heads: tuple[Head, ...]
    global_heads: tuple[Head, ...]
    receiver_heads: tuple[Head, ...] = ()


@dataclass(frozen=True)
class TokenRhythm:
    """The rhythm metrics of one response, one value per response token.

    Index ``i`` of every vector is response token ``response_start + i`` (see the module
    docstring's alignment).

    Attributes:
        prompt: the prompt's index in the record's batch.
        response_start: position of the first response token (from the prompt's first token).
        tokens: the response's token strings.
        waad: ``[response]`` WAAD of the local group.
        fai: ``[response]`` FAI of the global group; NaN where the band is empty.
        receiver_fai: ``[response]`` FAI of the receiver heads; NaN where the band is empty.
        roles: the heads used.
        entropy: ``[response]`` entropy (nats) of the row predicting each token, or None when no
            model was given.
    """

    prompt: int
    response_start: int
    tokens: tuple[str, ...]
    waad: Float[Tensor, " response"]
    fai: Float[Tensor, " response"]
    receiver_fai: Float[Tensor, " response"]
    roles: HeadRoles
    entropy: Float[Tensor, " response"] | None = None


# --- reductions on tensors -------------------------------------------------------------------


def head_spans(distance: Float[Tensor, "layer head response"]) -> Float[Tensor, "layer head"]:
    """Head span ``d(l, h)`` (Eq. 7): the mean over response rows of each head's distance."""
    if distance.shape[-1] == 0:
        raise ValueError("head spans need at least one response row")
    spans = distance.double().mean(dim=-1)
    if not torch.isfinite(spans).all():
        raise ValueError("a head's distance is NaN or infinite on a response row; response rows must be real "
                         "(non-padding) tokens of the captured input")
    return spans


def group_size(fraction: float, n_heads: int) -> int:
    """``round(fraction x n_heads)`` (half up), at least one head."""
    return max(1, math.floor(fraction * n_heads + 0.5))


def head_roles(spans: Float[Tensor, "layer head"], layers: Sequence[int], config: RhythmConfig) -> HeadRoles:
    """Local and global groups (Eq. 8): the heads of lowest and highest span.

    Ties are broken by position (layer, then head), the lower one counting as shorter.
    """
    n_layers, n_heads = spans.shape
    if len(layers) != n_layers:
        raise ValueError(f"spans have {n_layers} layers but {len(layers)} layer indices were given")
    total = n_layers * n_heads
    n_local, n_global = group_size(config.local_fraction, total), group_size(config.global_fraction, total)
    if n_local + n_global > total:
        raise ValueError(f"{total} heads cannot hold {n_local} local and {n_global} global heads; rank more "
                         "layers or lower the fractions")
    order = torch.sort(spans.flatten(), stable=True).indices.tolist()
    heads = [(layers[i // n_heads], i % n_heads) for i in order]
    return HeadRoles(layers=tuple(layers), spans=spans, local_heads=tuple(heads[:n_local]),
                     global_heads=tuple(reversed(heads[total - n_global:])))


def column_kurtosis(band_mean: Float[Tensor, "layer head key"]) -> Float[Tensor, "layer head"]:
    """Pearson kurtosis ``m4 / m2^2`` of each head's finite banded column means (NaN if constant)."""
    finite = torch.isfinite(band_mean)
    values = torch.where(finite, band_mean.double(), 0.0)
    count = finite.sum(-1).clamp_min(1)
    centred = torch.where(finite, values - values.sum(-1, keepdim=True) / count[..., None], 0.0)
    m2 = centred.pow(2).sum(-1) / count
    m4 = centred.pow(4).sum(-1) / count
    return torch.where(m2 > 0, m4 / m2.pow(2), math.nan)


def receiver_heads(kurtosis: Float[Tensor, "layer head"], layers: Sequence[int], fraction: float,
                   exclude: Sequence[Head] = ()) -> tuple[Head, ...]:
    """The heads of highest column kurtosis, highest first (NaN kurtosis ranks last), among the
    heads not in ``exclude``.

    Context:
        Bogdan et al. 2025 ("Thought Anchors") call *receiver heads* the heads whose vertical
        attention scores (mean attention each sentence receives from later sentences) have the
        highest kurtosis, averaged over problems. Li et al. use them for their co-occurrence
        coupling. This is a token-level approximation: the vertical score of token ``s`` is its
        banded column mean (the attention it receives from the band ``H_lo..H_hi`` tokens
        later), the kurtosis is over one response's tokens, and the heads are chosen per trace.
        :func:`rhythm_metrics` excludes the global heads by default
        (``RhythmConfig.receivers_outside_global``): the coupling "receiver-head FAI peaks
        co-occur with global FAI peaks" would otherwise partly compare the global FAI with itself
        (on SmolLM2, 6-18 of 27 receiver heads were global heads). The paper does not say whether
        the two sets overlap; this is our choice.
    """
    n_layers, n_heads = kurtosis.shape
    flat = torch.nan_to_num(kurtosis.double().flatten(), nan=-math.inf)
    order = torch.sort(flat, descending=True, stable=True).indices.tolist()
    heads = [(layers[i // n_heads], i % n_heads) for i in order]
    excluded = set(exclude)
    return tuple([h for h in heads if h not in excluded][:group_size(fraction, flat.numel())])


def group_waad(lookback: Float[Tensor, "group response"]) -> Float[Tensor, " response"]:
    """WAAD (Eq. 9): the group mean of the heads' ``lookback`` at each response row."""
    waad = lookback.double().mean(dim=0)
    if not torch.isfinite(waad).all():
        raise ValueError("lookback is NaN on a response row; response rows must be real (non-padding) tokens")
    return waad


def group_fai(band_sum: Float[Tensor, "group response"], band_count: Float[Tensor, " response"]) -> Float[Tensor, " response"]:
    """FAI (Eq. 10): the banded column mean of the group-mean map, NaN where the band is empty.

    Equal to the group mean of the heads' ``band_sum / band_count``, since the count is the same
    for every head.
    """
    count = band_count.double()
    total = band_sum.double().mean(dim=0)
    return torch.where(count > 0, total / count.clamp_min(1), math.nan)


# --- token entropy ---------------------------------------------------------------------------


def token_entropy(logits: Float[Tensor, "row vocab"]) -> Float[Tensor, " row"]:
    """Entropy in nats of the next-token distribution of each row, ``-sum_v p log p`` (0 log 0 = 0)."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    terms = torch.where(logp > -math.inf, logp.exp() * logp, 0.0)  # masked (-inf) tokens add 0, not NaN
    return (-terms.sum(dim=-1)).clamp_min(0.0)  # rounding can give -1e-17 on one-hot rows


def predicted_token_entropy(logits: Float[Tensor, "pos vocab"], response_start: int) -> Float[Tensor, " response"]:
    """Entropy of each response token's distribution: row ``t - 1`` for token ``t``.

    Args:
        logits: the logits of every position of prompt + response (no padding).
        response_start: position of the first response token (>= 1).
    """
    _check_response(response_start, logits.shape[0])
    return token_entropy(logits[response_start - 1 : -1])


def response_entropy(model: LoadedModel, input_ids: Int[Tensor, " pos"], response_start: int,
                     chunk_rows: int = 256) -> Float[Tensor, " response"]:
    """Token entropy of a response from one forward pass over prompt + response.

    The decoder runs once with the model's own attention; :func:`entropy_from_hidden` then reads
    its last hidden states. (:func:`circuits.rhythm.analysis.analyse_batch` avoids this second
    forward by keeping the capture's own hidden states, :func:`keep_final_hidden`.)

    Args:
        model: the model that produced (or is scored on) the response.
        input_ids: prompt then response ids, without padding.
        response_start: position of the first response token (>= 1).
        chunk_rows: rows per unembedding chunk.
    """
    _check_response(response_start, int(input_ids.shape[0]))
    hf = model.hf
    device = next(hf.parameters()).device
    with torch.no_grad():
        hidden = hf.get_decoder()(input_ids=input_ids[None].to(device), use_cache=False).last_hidden_state[0]
    return entropy_from_hidden(hf, hidden, response_start, chunk_rows)


def entropy_from_hidden(hf, hidden: Float[Tensor, "pos hidden"], response_start: int,
                        chunk_rows: int = 256) -> Float[Tensor, " response"]:
    """Token entropy of the response tokens from the decoder's last (normed) hidden states.

    The rows predicting response tokens go through the unembedding ``chunk_rows`` rows at a time,
    on the model's device, so memory is ``chunk_rows x vocab``, not ``response x vocab`` (262k-
    token vocabularies make the latter gigabytes at 32k tokens). Gemma-style final-logit
    soft-capping is applied where the config has it.
    """
    _check_response(response_start, int(hidden.shape[0]))
    rows = hidden[response_start - 1 : -1]
    with torch.no_grad():
        return torch.cat([token_entropy(unembed(hf, rows[i : i + chunk_rows])).cpu()
                          for i in range(0, rows.shape[0], chunk_rows)])


@contextmanager
def keep_final_hidden(hf) -> Iterator[list[Tensor]]:
    """Within the block, every forward's final-norm output ``[batch, pos, hidden]`` is appended
    to the yielded list (empty when the model has no ``norm`` module on its decoder)."""
    kept: list[Tensor] = []
    norm = getattr(hf.get_decoder(), "norm", None)
    if norm is None:
        yield kept
        return
    handle = norm.register_forward_hook(lambda module, args, output: kept.append(output.detach()))
    try:
        yield kept
    finally:
        handle.remove()


def unembed(hf, hidden: Float[Tensor, "row hidden"]) -> Float[Tensor, "row vocab"]:
    """The logits of final hidden states, as the model's own head computes them."""
    logits = hf.get_output_embeddings()(hidden)
    cap = getattr(hf.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


# --- from a record ---------------------------------------------------------------------------


def rhythm_metrics(record: AttentionRecord, response_starts: Sequence[int], config: RhythmConfig,
                   *, model: LoadedModel | None = None) -> list[TokenRhythm]:
    """WAAD, FAI, receiver-head FAI and head roles of every prompt of a statistics capture.

    Head roles are chosen per prompt, from the spans on that prompt's response (Eq. 7 is a mean
    over one response's rows).

    Args:
        record: a capture made with :func:`rhythm_config_capture` (pattern mode works too).
        response_starts: per prompt, the position of its first response token, counted from
            the prompt's first real token; the capture's band must not start after them (it
            may start earlier, or be None: response keys only collect from response rows).
        config: the rhythm parameters; ``window`` and the band must be those of the capture.
        model: when given, token entropy from one more forward pass per prompt (the record
            keeps only the last position's logits).

    Raises:
        ValueError: missing statistics or layers, settings that differ from the capture's, an
            empty response, or a response not longer than ``band_lo`` (no FAI anywhere).
    """
    starts = _checked_starts(response_starts)
    layers = _check_record(record, starts, config)
    return [_prompt_rhythm(record, prompt, start, layers, config, model) for prompt, start in enumerate(starts)]


def _prompt_rhythm(record: AttentionRecord, prompt: int, start: int, layers: tuple[int, ...],
                   config: RhythmConfig, model: LoadedModel | None) -> TokenRhythm:
    """The metrics of one prompt of ``record``."""
    n_tokens = len(record.tokens[prompt])
    _check_response(start, n_tokens, f"prompt {prompt}: ")
    if n_tokens - start <= config.band_lo:
        raise ValueError(f"prompt {prompt}: the response has {n_tokens - start} tokens, not more than band_lo="
                         f"{config.band_lo}, so no response token has a band row after it (FAI is undefined); "
                         "use a longer response or a smaller band_lo")
    roles = head_roles(head_spans(response_stat(record, layers, "distance", prompt, start)), layers, config)
    band_sum = response_stat(record, layers, "band_sum", prompt, start)
    band_count = record.stat(layers[0], "band_count", prompt)[start:]
    band_mean = torch.where(band_count > 0, band_sum.double() / band_count.double().clamp_min(1), math.nan)
    roles = replace(roles, receiver_heads=receiver_heads(column_kurtosis(band_mean), layers, config.receiver_fraction,
                                                        exclude=roles.global_heads if config.receivers_outside_global
                                                        else ()))
    lookback = response_stat(record, layers, "lookback", prompt, start)
    entropy = None
    if model is not None:
        entropy = response_entropy(model, record.input_ids[prompt, record.offset(prompt):], start)
    return TokenRhythm(prompt=prompt, response_start=start, tokens=tuple(record.tokens[prompt][start:]),
                       waad=group_waad(head_rows(lookback, layers, roles.local_heads)),
                       fai=group_fai(head_rows(band_sum, layers, roles.global_heads), band_count),
                       receiver_fai=group_fai(head_rows(band_sum, layers, roles.receiver_heads), band_count),
                       roles=roles, entropy=entropy)


def response_stat(record: AttentionRecord, layers: Sequence[int], name: str, prompt: int,
                  start: int) -> Float[Tensor, "layer *head response"]:
    """Statistic ``name`` of ``layers`` at one prompt's response positions (rows or columns)."""
    return torch.stack([record.stat(layer, name, prompt)[..., start:] for layer in layers])


def head_rows(values: Float[Tensor, "layer head response"], layers: Sequence[int],
              heads: Sequence[Head]) -> Float[Tensor, "group response"]:
    """The rows of ``heads`` (``(layer, head)`` pairs) of a ``[layer, head, ...]`` stack."""
    return values[[list(layers).index(layer) for layer, _ in heads], [head for _, head in heads]]


def _check_record(record: AttentionRecord, starts: tuple[int, ...], config: RhythmConfig) -> tuple[int, ...]:
    """The layers to rank; a ValueError when the record cannot give the metrics ``config`` asks."""
    fix = "capture with rhythm_config_capture(config, response_starts)"
    if len(starts) != record.batch_size:
        raise ValueError(f"{len(starts)} response starts for a record of {record.batch_size} prompts; give one per prompt")
    captured = record.config
    if captured.lookback_window != config.window:
        raise ValueError(f"the record's lookback window is {captured.lookback_window}, the config's W is "
                         f"{config.window}; {fix}")
    if (captured.band_lo, captured.band_hi) != (config.band_lo, config.band_hi):
        raise ValueError(f"the record's band is lo={captured.band_lo}, hi={captured.band_hi}; the config's is "
                         f"lo={config.band_lo}, hi={config.band_hi}; {fix}")
    # With band_lo >= 0, a response key's band rows all lie in the response whatever the band's
    # first rows, so a capture whose band starts earlier (or everywhere: None) gives the same FAI.
    first = captured.band_first_rows
    if first is not None and any(f > s for f, s in zip(first, starts)):
        raise ValueError(f"the record's band starts at rows {list(first)}, after the response starts {list(starts)}: "
                         f"response rows are missing from the band; {fix}")
    layers = config.layers if config.layers is not None else tuple(record.layers)
    missing = [l for l in layers if l not in record.stats]
    if missing:
        raise ValueError(f"layers {missing} are not in the record (recorded: {record.layers}); {fix}")
    for layer in layers:
        absent = [name for name in RHYTHM_STATS if name not in record.stats[layer]]
        if absent:
            raise ValueError(f"layer {layer} of the record has no {', '.join(absent)}; {fix}")
    return tuple(layers)


def _checked_starts(response_starts: Sequence[int]) -> tuple[int, ...]:
    """Response starts as a tuple of integers >= 1, or a ValueError."""
    if isinstance(response_starts, (str, bytes)) or not isinstance(response_starts, Sequence) or not response_starts:
        raise ValueError(f"response_starts must be a non-empty sequence of integers, one per prompt, got {response_starts!r}")
    if not all(_is_int(s) and s >= 1 for s in response_starts):
        raise ValueError(f"every response start must be an integer >= 1 (the prompt's length: at least one prompt "
                         f"token predicts the first response token), got {list(response_starts)}")
    return tuple(response_starts)


def _check_response(start: int, length: int, where: str = "") -> None:
    """A non-empty response after at least one prompt token, or a ValueError."""
    if not 1 <= start < length:
        raise ValueError(f"{where}the response starts at {start} but the input has {length} tokens: the response "
                         "is empty (or there is no prompt token before it); response starts must lie in 1..length-1")
