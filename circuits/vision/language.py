"""The words of the synthetic world: captions, yes/no questions and the chat prompt around them.

Context:
    Captions name every object with its size and colour, left to right ("A small red fork, a large
    blue knife and a green cat."). Questions take POPE's form, "Is there a {name} in the image?",
    answered "Yes" or "No". :data:`CAPTION_PROMPT` asks for a caption, as CHAIR's protocol asks a
    model to describe the image.
"""

from __future__ import annotations

import numpy as np

from circuits.vision.world import CATEGORIES, Scene

CAPTION_PROMPT = "Describe this image."
QUESTION = "Is there {article} {name} in the image?"
YES, NO = "Yes", "No"


def caption(scene: Scene) -> str:
    """Every object of the scene with its size and colour, left to right, as one sentence."""
    phrases = [f"{obj.size} {obj.colour} {obj.name}" for obj in scene.objects]
    phrases = [f"{_article(p)} {p}" for p in phrases]
    if len(phrases) == 1:
        body = phrases[0]
    else:
        body = ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return body[0].upper() + body[1:] + "."


def question(name: str) -> str:
    """POPE's question, with POPE's article ("Is there an elephant in the image?").

    The shipped synth-llava weights were trained when this wrote "a" before every name; POPE's
    files (and this function now) write "an" before a vowel, which only three names take.
    """
    return QUESTION.format(article=_article(name), name=name)


def sample_question(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    """A yes/no question about the scene: half about a present object, half about an absent one
    drawn uniformly from the categories (POPE's random setting)."""
    present = sorted(scene.names)
    if rng.random() < 0.5:
        return question(present[int(rng.integers(len(present)))]), YES
    absent = [n for n in CATEGORIES if n not in scene.names]
    return question(absent[int(rng.integers(len(absent)))]), NO


def _article(phrase: str) -> str:
    return "an" if phrase[0] in "aeiou" else "a"
