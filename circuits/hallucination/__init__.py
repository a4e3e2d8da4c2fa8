"""Object hallucination in vision-language models (issue 24): CHAIR and POPE, and a batch runner.

Metrics and their inputs:
    annotations: ground-truth object sets per image from a registry of annotation formats (the
        CHAIR COCO-2014 file, a YOLO-labelled folder, a JSON-lines ``{image, objects}`` file).
    chair: CHAIR (Rohrbach et al. 2018): the objects a caption mentions, CHAIR_S, CHAIR_I, recall.
    files: reading annotation and question files with one-line errors (missing, gzip garbage, bad JSON).
    intervals: bootstrap intervals over questions (POPE) and captions (CHAIR).
    pope: POPE (Li et al. 2023): yes/no answer parsing, accuracy, precision, recall, F1, yes ratio.
    question_sets: POPE's random / popular / adversarial question sets built from any annotations.
    questions: POPE question files (JSON lines ``{question_id, image, text, label}``), validated.
    words: caption tokens and the reference's rule-based singular forms (no NLTK downloads).

Evaluation items, the batch runner (batched generation, resumable JSON-lines results, torchrun
shards) and its summary live beside them.

Modules import torch only where they run a model, so the ``headscope vlm`` parser stays light;
importing this package imports nothing else.
"""
