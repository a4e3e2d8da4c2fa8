"""Colored-objects prompts (BIG-Bench's reasoning_about_colored_objects, in the form Merullo, Eickhoff
and Pavlick use in "Circuit Component Reuse Across Tasks in Transformer Language Models").

Context:
    "On the desk, I see a red pencil, a blue cup, and a green plate. What color is the cup?" asks
    the model to find the object among several and copy the colour said just before it: IOI's
    "find the right name and move it" with colours for names, which is why the paper finds most
    IOI heads reused here (methods dossier section h). The corrupted prompt swaps the colours of
    the asked object and one other object ("... a green cup, and a blue plate ..."), so the
    same colours stand in the same places but the answer becomes the other colour: ``contrast``.

    Each item is one-shot, as in the reference: a solved question about other objects on another
    surface, then the question. Three objects per question, from 8 simple colours (one token
    with a leading space for GPT-2 and SmolLM2) and 17 objects; the asked object's place in the
    list (first, second, third) is balanced over the items.

From BIG-Bench-Hard:
    ``--bbh PATH`` reads BBH's ``reasoning_about_colored_objects.json`` instead and keeps its
    questions that ask for the colour of a named object listed once ("What color is the pen?",
    "What is the color of the pen?"): 28 of its 250. They are written in the same form (no
    shot, the options list left out, the answer a colour word), with the same corruption.
    BBH's 18 colours include words such as "mauve" that are more than one token for GPT-2;
    :mod:`circuits.discovery.tasks` drops and counts those items.

Output:
    ``data/colored_objects.jsonl``: one JSON object per line, ``{"prompt", "corrupted", "answer",
    "contrast", "asked", "swapped"}`` (``asked``: the asked object's place in the list; ``swapped``:
    the place whose colour it exchanged). ``python data/make_colored_objects.py`` rewrites it.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from circuits.discovery.draws import distinct, index, shuffled
from probe.files import write_text_atomic

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "brown", "black")
OBJECTS = ("pencil", "notebook", "pen", "cup", "plate", "jug", "mug", "puzzle", "textbook", "leash", "necklace",
           "bracelet", "bottle", "ball", "envelope", "lighter", "bowl")
SURFACES = ("table", "desk", "floor")
LEADS = ("there is", "you see", "I see")
N_OBJECTS = 3
QUESTION = "Q: {intro} {listing}. What color is the {asked}?\nA:"
DEFAULT_COUNT = 150
DEFAULT_SEED = 0
BBH_COLOURS = ("red", "orange", "yellow", "green", "blue", "brown", "magenta", "fuchsia", "mauve", "teal", "turquoise",
               "burgundy", "silver", "gold", "black", "grey", "purple", "pink")
BBH_ITEM = re.compile(r"^(?P<scene>On the .+)\. (?:What color is|What is the color of) the (?P<asked>[\w -]+)\?$")
BBH_LISTING = re.compile(r"\ban? (?:%s) " % "|".join(BBH_COLOURS))


@dataclass(frozen=True)
class ColoredObjectsItem:
    """One question about an object's colour and its corrupted twin.

    Attributes:
        prompt: ends where the colour comes (``"... What color is the cup?\\nA:"``).
        corrupted: the same prompt with the colours of the asked object and of object
            ``swapped`` exchanged.
        answer: the asked object's colour, with a leading space.
        contrast: the colour of object ``swapped`` (the answer to ``corrupted``), with a leading space.
        asked: the asked object's place in the question's list (0-based).
        swapped: the place whose colour the corruption exchanged with it.
    """

    prompt: str
    corrupted: str
    answer: str
    contrast: str
    asked: int
    swapped: int


def listing(colours: list[str], objects: list[str]) -> str:
    """``"a red pen, an orange cup, and a blue bowl"``."""
    parts = [f"{'an' if colour[0] in 'aeiou' else 'a'} {colour} {obj}" for colour, obj in zip(colours, objects)]
    if len(parts) == 2:
        return " and ".join(parts)
    return ", ".join(parts[:-1]) + ", and " + parts[-1]


def question(intro: str, colours: list[str], objects: list[str], asked: int) -> str:
    """``"Q: {intro} {listing}. What color is the {object}?\\nA:"``."""
    return QUESTION.format(intro=intro, listing=listing(colours, objects), asked=objects[asked])


def _swap(colours: list[str], i: int, j: int) -> list[str]:
    out = list(colours)
    out[i], out[j] = out[j], out[i]
    return out


def colored_objects_item(rng: random.Random, asked: int) -> ColoredObjectsItem:
    """One one-shot item whose question asks about the object at place ``asked``."""
    objects = distinct(rng, OBJECTS, 2 * N_OBJECTS)  # the solved example's three, then the question's
    shot_objects, objects = objects[:N_OBJECTS], objects[N_OBJECTS:]
    shot_colours, colours = distinct(rng, COLOURS, N_OBJECTS), distinct(rng, COLOURS, N_OBJECTS)
    intros = [f"On the {surface}, {LEADS[index(rng, len(LEADS))]}" for surface in distinct(rng, SURFACES, 2)]
    shot_asked = index(rng, N_OBJECTS)
    shot = question(intros[0], shot_colours, shot_objects, shot_asked) + f" {shot_colours[shot_asked]}\n"
    others = [place for place in range(N_OBJECTS) if place != asked]
    swapped = others[index(rng, len(others))]
    return ColoredObjectsItem(
        prompt=shot + question(intros[1], colours, objects, asked),
        corrupted=shot + question(intros[1], _swap(colours, asked, swapped), objects, asked),
        answer=" " + colours[asked],
        contrast=" " + colours[swapped],
        asked=asked,
        swapped=swapped,
    )


def colored_objects_items(count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED) -> list[ColoredObjectsItem]:
    """``count`` items (a multiple of 3: the asked place balanced), drawn with ``seed``."""
    if count < N_OBJECTS or count % N_OBJECTS:
        raise ValueError(f"count must be a positive multiple of {N_OBJECTS} (the asked place is balanced), got {count}")
    rng = random.Random(seed)
    return shuffled(rng, [colored_objects_item(rng, k % N_OBJECTS) for k in range(count)])


def bbh_items(path: Path, seed: int = DEFAULT_SEED) -> list[ColoredObjectsItem]:
    """The direct colour questions of BBH's ``reasoning_about_colored_objects.json`` at ``path``.

    Raises:
        ValueError: ``path`` is not a BBH task file, or none of its questions has that form.
    """
    try:
        examples = json.loads(Path(path).read_text(encoding="utf-8"))["examples"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a BBH task file ({err}); pass reasoning_about_colored_objects.json "
                         "from BIG-Bench-Hard's bbh/ folder") from err
    rng = random.Random(seed)
    items = []
    for example in examples:
        match = BBH_ITEM.match(str(example.get("input", "")).split("\nOptions:")[0])
        start = BBH_LISTING.search(match["scene"]) if match else None
        if start is None:
            continue
        intro = match["scene"][: start.start()].rstrip()
        colours, objects = _parse_listing(match["scene"][start.start() :])
        if not colours or objects.count(match["asked"]) != 1:
            continue
        asked = objects.index(match["asked"])
        others = [place for place in range(len(objects)) if colours[place] != colours[asked]]
        if not others:
            continue
        swapped = others[index(rng, len(others))]
        items.append(ColoredObjectsItem(
            prompt=question(intro, colours, objects, asked),
            corrupted=question(intro, _swap(colours, asked, swapped), objects, asked),
        answer=" " + colours[asked],
            contrast=" " + colours[swapped],
            asked=asked,
            swapped=swapped,
        ))
    if not items:
        raise ValueError(f"{path} has no question of the form 'What color is the <object>?' about a listed object")
    return items


def _parse_listing(text: str) -> tuple[list[str], list[str]]:
    """Colours and objects of ``"a blue pen, an orange mug, and a grey cup"`` (empty if unreadable)."""
    parts = re.split(r", and |, | and ", text)
    colours, objects = [], []
    for part in parts:
        words = part.split(" ", 2)
        if len(words) != 3 or words[0] not in ("a", "an") or words[1] not in BBH_COLOURS:
            return [], []
        colours.append(words[1])
        objects.append(words[2])
    return colours, objects


def write_file(items: list[ColoredObjectsItem], path: Path) -> Path:
    """Write ``items`` to ``path`` as JSON lines, atomically."""
    return write_text_atomic(path, "".join(json.dumps(asdict(item)) + "\n" for item in items))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="items (a multiple of 3)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--bbh", type=Path, help="BBH's reasoning_about_colored_objects.json: take its direct "
                        "colour questions instead of drawing items (--count is then ignored)")
    parser.add_argument("--out", type=Path, help="file to write (default data/colored_objects.jsonl, "
                        "or data/colored_objects_bbh.jsonl with --bbh)")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parent
    if args.bbh is not None:
        items, out = bbh_items(args.bbh, args.seed), args.out or here / "colored_objects_bbh.jsonl"
    else:
        items, out = colored_objects_items(args.count, args.seed), args.out or here / "colored_objects.jsonl"
    print(f"wrote {write_file(items, out)} ({len(items)} items)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
