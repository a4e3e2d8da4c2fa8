"""The ``headscope vlm`` command group: ``vlm eval``, the batch evaluation of object hallucination;
``vlm world``, the synthetic world's evaluation sets; ``vlm carve``, CARVE (contrastive attention crops).

Context:
    This module only builds the parser; the run function is
    :func:`circuits.hallucination.cli_eval.run_eval`, imported when the command runs, so
    ``headscope vlm eval --help`` answers without torch. Counts are checked here by argparse,
    files and names in the run function before any model loads.

    ``vlm eval`` runs under ``torchrun`` as it is: ``torchrun --nproc_per_node 2 -m probe.cli vlm
    eval ...`` splits the items over two processes (one per GPU with ``--device cuda``) and merges
    their results.
"""

from __future__ import annotations

from pathlib import Path

from probe.cli_options import LazyCommand, int_list, non_negative_int, positive_int

POPE_HELP = ("a POPE question file (JSON lines {question_id, image, text, label}) or a split name (random, popular, "
             "adversarial: coco_pope_NAME.json in --pope-dir); repeat for several")
ANSWERER_HELP = ("hf: the model of --model (default); carve: the same through CARVE (no --edit); fake-hash, "
                 "fake-hash-slow: test aids without a model, answers hashed from image and prompt")


def register(subparsers) -> None:
    vlm = subparsers.add_parser("vlm", help="vision-language models: hallucination evaluation (POPE, CHAIR)")
    verbs = vlm.add_subparsers(dest="vlm_command", required=True)
    _register_eval(verbs)
    _register_world(verbs)
    _register_vhd(verbs)
    _register_carve(verbs)


def _register_world(verbs) -> None:
    p = verbs.add_parser("world", help="write evaluation sets of the synthetic world (annotations, POPE's three "
                                       "splits, a CHAIR vocabulary) for vlm eval")
    p.add_argument("--split", choices=("heldout", "broken", "train"), default="heldout",
                   help="heldout: the training distribution; broken: one member of a planted pair without its partner")
    p.add_argument("--count", type=positive_int, default=200, help="scenes (default 200)")
    p.add_argument("--per-image", type=positive_int, default=3, help="present (and absent) objects asked per scene")
    p.add_argument("--seed", type=int, default=0, help="seed of the question draws")
    p.add_argument("--world-seed", type=non_negative_int, default=0,
                   help="seed of the scenes (default 0; another seed gives an independent scene set of the split)")
    p.add_argument("--out", type=Path, required=True, help="folder for world-SPLIT_*.json[l] and world_chair_vocabulary.json")
    p.set_defaults(func=LazyCommand("circuits.vision.cli_world", "run_world"))


def _register_vhd(verbs) -> None:
    p = verbs.add_parser("vhd", help="vision-aware head divergence (He et al. 2025) of every head over a prompt set: "
                                     "mean VHD, T-VHD, Eq. 6 outliers, the ranking, as one JSON file")
    p.add_argument("--model", default="synth-llava", help="the vision-language model (default synth-llava)")
    source = p.add_argument_group("items (one source)")
    source.add_argument("--world", choices=("heldout", "broken", "train"), default=None,
                        help="scenes of the synthetic world's split, each asked --prompt")
    source.add_argument("--pope", type=Path, default=None,
                        help="a POPE question file (JSON lines {question_id, image, text, label}): its (image, "
                             "question) pairs")
    source.add_argument("--images", type=Path, default=None,
                        help="folder the --pope file's image paths are relative to")
    p.add_argument("--count", type=positive_int, default=50, help="scenes or questions (default 50)")
    p.add_argument("--start", type=non_negative_int, default=0, help="first scene index of --world (default 0)")
    p.add_argument("--seed", type=int, default=0, help="the world's seed (default 0: the scenes synth-llava knows)")
    p.add_argument("--prompt", default="Describe this image.", help="the request asked of every --world scene")
    p.add_argument("--top-k", type=positive_int, default=3, help="heads per layer summed by T-VHD (default 3)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="items per two-stream forward")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1 ...")
    p.add_argument("--out", type=Path, required=True, help="the JSON file to write (atomically)")
    p.set_defaults(func=LazyCommand("circuits.vision.cli_vhd", "run_vhd"))


def _register_eval(verbs) -> None:
    p = verbs.add_parser("eval", help="POPE and CHAIR over image sets, with and without edits; resumable, "
                                      "shards over processes under torchrun")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder: results.jsonl, summary.{json,txt,html}, shards/ (rerunning continues it)")
    p.add_argument("--model", default=None,
                   help="the vision-language model: a registered name, an HF folder or a hub id (for --answerer hf)")
    p.add_argument("--answerer", default="hf", help=ANSWERER_HELP)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda (under torchrun: cuda:LOCAL_RANK), cuda:1 ...")
    sets = p.add_argument_group("item sets (at least one)")
    sets.add_argument("--pope", action="append", default=[], metavar="FILE_OR_SPLIT", help=POPE_HELP)
    sets.add_argument("--pope-dir", type=Path, default=None,
                      help="folder of the POPE split files (default $HEADSCOPE_POPE_DIR)")
    sets.add_argument("--chair-captions", action="store_true",
                      help="ask for a caption of every image of --annotations (those in --images when given)")
    sets.add_argument("--annotations", type=Path, default=None,
                      help="ground-truth objects per image (the CHAIR COCO file, a YOLO folder, JSON lines)")
    sets.add_argument("--chair-vocabulary", type=Path, default=None,
                      help="CHAIR's object words and synonyms (default: the --annotations file)")
    sets.add_argument("--images", type=Path, default=None, help="folder that image paths of the items are relative to")
    p.add_argument("--edit", action="append", default=[], metavar="NAME",
                   help="also answer under this registered edit (act, vhr, vhr-random, ...); repeat for several; "
                        "'none' always runs")
    p.add_argument("--batch-size", type=positive_int, default=8, help="items per generate call")
    p.add_argument("--max-new-tokens", type=positive_int, default=96, help="most tokens per caption (CHAIR)")
    p.add_argument("--answer-tokens", type=positive_int, default=8, help="most tokens per yes/no answer (POPE)")
    p.add_argument("--pope-suffix", default="",
                   help="text appended to each POPE question (LLaVA's: ' Answer the question using a single word or "
                        "phrase.'); default none")
    p.add_argument("--caption-prompt", default="Please describe this image in detail.",
                   help="the CHAIR request (default: 'Please describe this image in detail.')")
    p.add_argument("--limit", type=positive_int, default=None, help="the first N items of each set (default all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=LazyCommand("circuits.hallucination.cli_eval", "run_eval"))


def _register_carve(verbs) -> None:
    p = verbs.add_parser("carve", help="CARVE: answer with the original image and a crop of where the task query's "
                                       "attention exceeds a general instruction's (Ge et al. 2025)")
    p.add_argument("--model", default="synth-llava", help="the vision-language model (default synth-llava)")
    p.add_argument("--world", choices=("heldout", "broken", "train"), default=None,
                   help="scenes of the synthetic world: a present and an absent object asked per scene")
    p.add_argument("--count", type=positive_int, default=30, help="scenes of --world (default 30)")
    p.add_argument("--image", type=Path, default=None, help="one image file (with --question)")
    p.add_argument("--question", default=None, help="the question about --image")
    p.add_argument("--out", type=Path, required=True, help="JSON file: per item the answers without and with CARVE, "
                                                           "the contrast peak, the mask's box")
    p.add_argument("--general", default=None, help="the general instruction G (default: the model's own form, "
                                                    "else 'Write a general description of the image.')")
    p.add_argument("--suffix", default=None, help="text after G and the question (default: none for synth-llava, "
                                                   "else 'Answer the question using a single word or phrase.')")
    p.add_argument("--layers", type=int_list, default=None,
                   help="comma-separated layers summed (default: 20..25 of 32 at the same relative depth)")
    p.add_argument("--step-mode", choices=("all", "last"), default="all",
                   help="all: steps weighted t+1 (the code's v4, default); last: the final step (the paper's t_end)")
    p.add_argument("--top-percent", type=float, default=0.2, help="share of pixels and regions kept (default 0.2)")
    p.add_argument("--max-new-tokens", type=positive_int, default=32, help="steps recorded per map (default 32)")
    p.add_argument("--answer-tokens", type=positive_int, default=32, help="most tokens of the final answer")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1 ...")
    p.set_defaults(func=LazyCommand("circuits.vision.cli_carve", "run_carve"))
