"""What ``headscope vlm eval`` checks and reads before a model loads: its plan.

Context:
    :func:`plan_eval` checks the arguments (answerer, edits, output folder, image folder) and reads
    every item set: each ``--pope`` file and the ``--chair-captions`` set (annotations, then the
    CHAIR vocabulary, which must hold every ground-truth object). A set that cannot be read (a
    missing or unreadable file, a question file with unknown fields, annotations that match no
    image) is *skipped*: a ``warning:`` line names it and the reason, the summary lists it, and
    the other sets go on. Only when no set can be read does the run stop, with that error, before
    any model loads.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from functools import partial

from circuits.hallucination.answerers import AnswererOptions, check_answerer
from circuits.hallucination.conditions import conditions
from circuits.hallucination.item_sets import Prompts, chair_items, pope_items, pope_path
from circuits.hallucination.items import EvalItem, check_unique_ids
from circuits.hallucination.runner import RunSettings
from circuits.hallucination.store import RESULTS_FILE
from probe.cli_options import UsageError, check_output_path

SET_ERRORS = (ValueError, OSError)
"""What reading an item set raises for a bad file (InputError and UsageError are ValueErrors)."""


@dataclass(frozen=True)
class SkippedSet:
    """An item set left out because it could not be read.

    Attributes:
        option: the option that named it (``--pope FILE``, ``--chair-captions``).
        error: why, as the error line would say it.
    """

    option: str
    error: str


@dataclass(frozen=True)
class EvalPlan:
    """What ``vlm eval`` checked before any model loads.

    Attributes:
        items: every item of the run, in order (all processes hold the same list).
        settings: conditions, batch size, token budgets, image folder.
        options: what the answerer is built from.
        vocabulary: CHAIR's vocabulary (None without CHAIR items).
        manifest: the settings that decide the answers, kept in ``run.json``.
        skipped: the sets left out, with the reason.
    """

    items: tuple[EvalItem, ...]
    settings: RunSettings
    options: AnswererOptions
    vocabulary: object
    manifest: dict
    skipped: tuple[SkippedSet, ...] = ()


def plan_eval(args: argparse.Namespace) -> EvalPlan:
    """Check every argument and read every item set; fails fast, before a model loads."""
    check_answerer(args.answerer)
    if args.answerer in ("hf", "carve") and not args.model:
        raise UsageError("--model: name the vision-language model (a LLaVA folder, a hub id, a registered name)")
    names = conditions(args.edit)
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out: {args.out} is a file; pass a folder (it is created when missing)")
    check_output_path(args.out / RESULTS_FILE)
    if args.images is not None and not args.images.is_dir():
        raise UsageError(f"--images: {args.images} {'is not a folder' if args.images.exists() else 'does not exist'}")
    prompts = Prompts(pope_suffix=args.pope_suffix, caption=args.caption_prompt)
    items, vocabulary, skipped = read_sets(args, prompts)
    settings = RunSettings(conditions=names, batch_size=args.batch_size, images_dir=args.images,
                           max_new_tokens={"pope": args.answer_tokens, "chair": args.max_new_tokens})
    options = AnswererOptions(model=args.model, device=args.device, conditions=names)
    manifest = {"answerer": args.answerer, "model": args.model if args.answerer == "hf" else None,
                "pope_suffix": prompts.pope_suffix, "caption_prompt": prompts.caption,
                "answer_tokens": args.answer_tokens, "max_new_tokens": args.max_new_tokens}
    return EvalPlan(tuple(items), settings, options, vocabulary, manifest, skipped)


def read_sets(args: argparse.Namespace, prompts: Prompts) -> tuple[list[EvalItem], object, tuple[SkippedSet, ...]]:
    """The items of every readable set (``--pope`` sets, then CHAIR's), CHAIR's vocabulary, and
    the sets skipped; raises the first set's error when none can be read."""
    if not args.pope and not args.chair_captions:
        raise UsageError("nothing to evaluate: pass --pope FILE_OR_SPLIT and/or --chair-captions --annotations FILE")
    if args.annotations is not None and not args.chair_captions:
        raise UsageError("--annotations is read by --chair-captions; add --chair-captions or drop --annotations")
    readers = [(f"--pope {name}", partial(read_pope_set, args, name, prompts)) for name in args.pope]
    if args.chair_captions:
        readers.append(("--chair-captions", partial(read_chair_set, args, prompts)))
    items, vocabulary, skipped, first_error = [], None, [], None
    for option, read in readers:
        try:
            found, found_vocabulary = read()
        except SET_ERRORS as err:
            skipped.append(SkippedSet(option, str(err)))
            first_error = first_error or err
            continue
        items += found
        vocabulary = found_vocabulary or vocabulary
    if not items:
        raise first_error
    for skip in skipped:
        print(f"warning: {skip.option} skipped, the other sets go on: {skip.error}", file=sys.stderr)
    return check_unique_ids(items), vocabulary, tuple(skipped)


def read_pope_set(args: argparse.Namespace, name: str, prompts: Prompts) -> tuple[list[EvalItem], None]:
    split, path = pope_path(name, args.pope_dir)
    return pope_items(path, split, prompts, args.limit), None


def read_chair_set(args: argparse.Namespace, prompts: Prompts) -> tuple[list[EvalItem], object]:
    """CHAIR's items (one per annotated image) and its vocabulary."""
    from circuits.hallucination.annotations import load_annotations

    if args.annotations is None:
        raise UsageError("--chair-captions needs --annotations FILE: the objects truly in each image")
    items, unmatched = chair_items(load_annotations(args.annotations), args.images, prompts, args.limit)
    if unmatched:
        print(f"warning: {unmatched} images in {args.images} have no annotation in {args.annotations}: left out",
              file=sys.stderr)
    if not items:
        where = f"images in {args.images}" if args.images is not None else "annotated images"
        raise UsageError(f"--chair-captions: no {where} match the keys of {args.annotations}; check both paths")
    return items, read_vocabulary(args, items)


def read_vocabulary(args: argparse.Namespace, items: list[EvalItem]):
    """CHAIR's vocabulary; every ground-truth object must be one of its categories."""
    from circuits.hallucination.chair import ChairVocabulary

    path = args.chair_vocabulary or args.annotations
    vocabulary = ChairVocabulary.from_file(path)
    for item in items:
        unknown = sorted(set(item.truth or ()) - vocabulary.categories)
        if unknown:
            raise UsageError(f"--annotations: image {item.image!r} has the object {unknown[0]!r}, not a category of "
                             f"the CHAIR vocabulary {path}; name objects by their COCO category or pass "
                             "--chair-vocabulary FILE")
    return vocabulary
