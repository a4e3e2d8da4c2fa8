"""A target and a foil token, and the logit difference between them at the last position.

Context:
    Circuit work measures a behaviour as ``logit(target) - logit(foil)`` at the last position
    (IOI: the indirect object " Mary" against the subject " John"). The difference is invariant
    to the softmax's shift, so it is what head attributions decompose and what ablations move.

    :func:`target_foil` turns the two texts into one token id each, refusing texts that are not
    exactly one token of the model's tokenizer (one line naming the pieces and the fix).
    :func:`logit_difference` reads it from last-position logits, such as a capture's
    ``record.last_logits``, so the dashboard's before/after records give it without a forward.
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxtyping import Float
from torch import Tensor

from probe.capture.record import AttentionRecord
from probe.errors import InputError


@dataclass(frozen=True)
class TargetFoil:
    """Two single tokens of one tokenizer.

    Attributes:
        target, foil: the texts as typed (a leading space matters: " Mary" is not "Mary").
        target_id, foil_id: their token ids.
    """

    target: str
    foil: str
    target_id: int
    foil_id: int


def single_token(tokenizer, text: str, role: str) -> int:
    """The id of ``text`` when it is exactly one token of ``tokenizer`` (no special tokens added).

    Raises:
        InputError: empty text, or a text of several tokens (the message lists them).
    """
    if not isinstance(text, str) or not text:
        raise InputError(f"the {role} token is empty; type one token, e.g. ' Mary' (with its leading space)")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = ", ".join(repr(tokenizer.decode([i])) for i in ids)
        raise InputError(f"the {role} {text!r} is {len(ids)} tokens ({pieces}) for this tokenizer; "
                         "choose a text that is one token (names usually need their leading space)")
    return int(ids[0])


def target_foil(tokenizer, target: str, foil: str) -> TargetFoil:
    """Both texts checked as single tokens; the same token twice is refused (its difference is 0)."""
    target_id = single_token(tokenizer, target, "target")
    foil_id = single_token(tokenizer, foil, "foil")
    if target_id == foil_id:
        raise InputError(f"the target {target!r} and the foil {foil!r} are the same token; choose two different tokens")
    return TargetFoil(target, foil, target_id, foil_id)


def logit_difference(logits: Float[Tensor, "*batch vocab"], pair: TargetFoil) -> Float[Tensor, "*batch"]:
    """``logits[..., target] - logits[..., foil]``, in the logits' dtype."""
    vocab = logits.shape[-1]
    if max(pair.target_id, pair.foil_id) >= vocab:
        raise InputError(f"token ids {pair.target_id}, {pair.foil_id} are beyond these logits' vocabulary of {vocab}; "
                         "the pair was made with another tokenizer")
    return logits[..., pair.target_id] - logits[..., pair.foil_id]


@dataclass(frozen=True)
class LogitDiffChange:
    """The logit difference of one prompt before and after an edit, with both probabilities.

    Attributes:
        before, after: ``logit(target) - logit(foil)``.
        p_target, p_foil: ``(before, after)`` softmax probabilities of each token.
    """

    before: float
    after: float
    p_target: tuple[float, float]
    p_foil: tuple[float, float]

    @property
    def change(self) -> float:
        return self.after - self.before


def logit_diff_change(before: AttentionRecord, after: AttentionRecord, pair: TargetFoil,
                      prompt: int = 0) -> LogitDiffChange:
    """The difference on prompt ``prompt`` of two captures (unedited and edited) of the same input.

    Raises:
        InputError: a record without logits.
    """
    rows = []
    for record in (before, after):
        if record.last_logits is None:
            raise InputError("this record has no logits (a saved record without them); run the prompt live")
        rows.append(record.last_logits[prompt].double())
    probs = [row.softmax(-1) for row in rows]
    return LogitDiffChange(
        before=float(logit_difference(rows[0], pair)), after=float(logit_difference(rows[1], pair)),
        p_target=(float(probs[0][pair.target_id]), float(probs[1][pair.target_id])),
        p_foil=(float(probs[0][pair.foil_id]), float(probs[1][pair.foil_id])),
    )

