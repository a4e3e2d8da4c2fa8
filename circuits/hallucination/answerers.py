"""Answerers: what turns a batch of (image, prompt) pairs into the model's answers.

Context:
    The runner (:mod:`circuits.hallucination.runner`) knows nothing of models: it hands an
    :class:`Answerer` a batch and a :class:`Request` (the condition, the item kind, the token
    budget) and records the texts that come back. :class:`HFAnswerer` is the real one: a
    vision-language model and its processor, batched greedy ``generate`` over left-padded inputs,
    the condition's edits (:mod:`circuits.hallucination.conditions`) applied through
    :func:`probe.edits.apply_edits` around the call.

    :class:`CarveAnswerer` answers through CARVE (:func:`circuits.vision.carve_pipeline.carve`): one
    item at a time, the general instruction's maps computed once per image.

    Answerers are built by name from :data:`ANSWERERS` (``--answerer``). ``fake-hash`` and
    ``fake-hash-slow`` are **test aids**: no model, answers that are a pure function of the image,
    the prompt and the condition (the slow one sleeps 0.3 s per batch so a test can kill a run
    half-way). They let the runner, the shards and the resume logic be tested end to end from the
    command line without weights and without running code named by the input.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

from probe.cli_options import UsageError

Query = tuple[Any, str]
"""One question: an RGB ``PIL.Image`` and the prompt text."""


@dataclass(frozen=True)
class Request:
    """How to answer one batch.

    Attributes:
        condition: ``none`` or a registered edit name.
        kind: ``pope`` (a yes/no answer) or ``chair`` (a caption).
        max_new_tokens: most tokens generated per answer.
    """

    condition: str
    kind: str
    max_new_tokens: int


class Answerer(Protocol):
    def answer(self, batch: Sequence[Query], request: Request) -> list[str]:
        """One answer per query, in order."""
        ...


@dataclass(frozen=True)
class AnswererOptions:
    """What an answerer is built from.

    Attributes:
        model: model name, folder or hub id (:func:`probe.models.load_model`).
        device: where the model runs (``cpu``, ``cuda:1`` ...).
        conditions: the run's conditions, so edits are built once up front.
    """

    model: str
    device: str = "cpu"
    conditions: tuple[str, ...] = ("none",)


class HFAnswerer:
    """A Hugging Face vision-language model answering by batched greedy generation
    (:func:`probe.models.vlm_inputs.generate_answers`, one ``generate`` call per batch), inside
    the condition's edits."""

    def __init__(self, model, conditions: Sequence[str] = ("none",)):
        from circuits.hallucination.conditions import edits_for
        from probe.models.vlm_inputs import check_vision_model

        check_vision_model(model)  # a text-only model, or a VLM without an image-token id, stops here
        self.model = model
        self.edits = {name: edits_for(name, model) for name in conditions}

    def answer(self, batch: Sequence[Query], request: Request) -> list[str]:
        from probe.edits import apply_edits
        from probe.models.vlm_inputs import generate_answers

        from circuits.hallucination.conditions import batch_edits

        images, prompts = [image for image, _ in batch], [prompt for _, prompt in batch]
        edits = batch_edits(self.edits[request.condition], prompts, images)
        with apply_edits(self.model, edits) if edits else nullcontext():
            return generate_answers(self.model, prompts, images, max_new_tokens=request.max_new_tokens,
                                    batch_size=len(batch))


def hf_answerer(options: AnswererOptions) -> Answerer:
    from probe.models import load_model

    return HFAnswerer(load_model(options.model, device=options.device), options.conditions)


class CarveAnswerer:
    """CARVE over a vision-language model: each query answered with its image and CARVE's refined crop
    (:func:`circuits.vision.carve_pipeline.carve`, the model's own request forms), without edits."""

    def __init__(self, model, conditions: Sequence[str] = ("none",)):
        from probe.models.vlm_inputs import check_vision_model

        if any(name != "none" for name in conditions):
            raise UsageError("--answerer carve runs without edits; leave out --edit (its maps need eager attention)")
        check_vision_model(model)
        self.model = model
        self.general: dict[bytes, Any] = {}

    def answer(self, batch: Sequence[Query], request: Request) -> list[str]:
        from circuits.vision.carve_pipeline import CarveOptions, carve, general_attention

        options = CarveOptions(answer_tokens=request.max_new_tokens)
        answers = []
        for image, prompt in batch:
            key = hashlib.sha256(image.tobytes()).digest()
            if key not in self.general:
                self.general = {key: general_attention(self.model, image, options)}  # one image at a time
            answers.append(carve(self.model, image, prompt, options, general=self.general[key]).answer)
        return answers


def carve_answerer(options: AnswererOptions) -> Answerer:
    from probe.models import load_model

    if any(name != "none" for name in options.conditions):
        raise UsageError("--answerer carve runs without edits; leave out --edit (its maps need eager attention)")
    return CarveAnswerer(load_model(options.model, device=options.device), options.conditions)


class HashAnswerer:
    """Test aid: answers that are a pure function of image, prompt and condition.

    POPE: ``yes`` when the hash is even, else ``no``. CHAIR: a caption naming two of
    :data:`CAPTION_WORDS` picked by the hash.
    """

    CAPTION_WORDS = ("person", "dog", "cat", "car", "chair", "cup", "fork", "knife", "bicycle", "boat")

    def __init__(self, seconds_per_batch: float = 0.0):
        self.seconds_per_batch = seconds_per_batch

    def answer(self, batch: Sequence[Query], request: Request) -> list[str]:
        time.sleep(self.seconds_per_batch)
        return [self.answer_one(image, prompt, request) for image, prompt in batch]

    def answer_one(self, image, prompt: str, request: Request) -> str:
        digest = hashlib.sha256(f"{request.condition}\n{prompt}\n".encode() + image.tobytes()).digest()
        if request.kind == "pope":
            return "Yes." if digest[0] % 2 == 0 else "No."
        first, second = (self.CAPTION_WORDS[b % len(self.CAPTION_WORDS)] for b in digest[1:3])
        return f"A picture of a {first} next to a {second}."


ANSWERERS: dict[str, Callable[[AnswererOptions], Answerer]] = {
    "hf": hf_answerer,
    "carve": carve_answerer,
    "fake-hash": lambda options: HashAnswerer(),
    "fake-hash-slow": lambda options: HashAnswerer(seconds_per_batch=0.3),
}
"""``--answerer`` names: ``hf`` (the model of ``--model``), ``carve`` (the same through CARVE) and the test
aids ``fake-hash*``."""


def check_answerer(name: str) -> str:
    if name not in ANSWERERS:
        raise UsageError(f"--answerer: unknown answerer {name!r}; answerers: {', '.join(ANSWERERS)}")
    return name


def build_answerer(name: str, options: AnswererOptions) -> Answerer:
    return ANSWERERS[check_answerer(name)](options)
