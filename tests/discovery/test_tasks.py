"""Task files tokenized into ContrastSets: every shipped item fits GPT-2's tokenizer; items that do
not fit a tokenizer are dropped and counted; when none fits the error names task, tokenizer and fix."""

from __future__ import annotations

import json

import pytest

from circuits.discovery.contrast import ContrastSet
from circuits.discovery.tasks import (
    TaskItem,
    TaskSpec,
    load_task,
    read_items,
    register_task,
    task_names,
    tokenize_items,
)
from probe.errors import InputError

TASKS = ("colored_objects", "docstring", "greater_than", "ioi")
SIZES = {"colored_objects": 150, "docstring": 120, "greater_than": 194, "ioi": 48}


def test_registry_lists_the_four_tasks_and_refuses_a_second_of_a_name():
    assert task_names() == TASKS
    with pytest.raises(ValueError, match="registered already"):
        register_task(TaskSpec("ioi", "ioi.jsonl", "python data/make_ioi.py"))


@pytest.mark.parametrize("task", TASKS)
def test_every_shipped_item_fits_gpt2(task, tokenizer):
    loaded = load_task(task, tokenizer)
    assert loaded.total == SIZES[task] and loaded.kept == tuple(range(SIZES[task]))
    assert loaded.summary() == f"{task}: {SIZES[task]} of {SIZES[task]} items kept"
    assert len(loaded.contrast) == SIZES[task] and loaded.contrast.task == task
    assert bool((loaded.contrast.answer != loaded.contrast.contrast).all())


def test_contrast_set_is_left_padded_with_the_tokenizers_ids(tokenizer):
    items = read_items("ioi")  # 14 to 16 GPT-2 tokens (the other tasks' prompts have one length each)
    contrast = load_task("ioi", tokenizer).contrast
    n, width = contrast.clean.shape
    assert contrast.corrupted.shape == contrast.attention_mask.shape == (n, width)
    assert contrast.texts == tuple(item.prompt for item in items)
    lengths = contrast.attention_mask.sum(1)
    assert int(lengths.max()) == width and int(lengths.min()) < width  # the prompts differ in length
    for row, item in enumerate(items):
        length = int(lengths[row])
        mask = contrast.attention_mask[row]
        assert mask[: width - length].eq(0).all() and mask[width - length :].eq(1).all()  # padding on the left
        assert contrast.clean[row, : width - length].eq(tokenizer.pad_token_id).all()
        assert contrast.clean[row, width - length :].tolist() == tokenizer(item.prompt)["input_ids"]
        assert contrast.corrupted[row, width - length :].tolist() == tokenizer(item.corrupted)["input_ids"]
        assert [int(contrast.answer[row]), int(contrast.contrast[row])] == [
            tokenizer(item.answer)["input_ids"][0], tokenizer(item.contrast)["input_ids"][0]]


def test_left_padded_builds_the_shared_mask_and_checks_lengths():
    contrast = ContrastSet.left_padded("t", [[5, 6, 7], [8]], [[9, 9, 9], [3]], [1, 2], [3, 4], ["a", "b"], pad_id=0)
    assert contrast.clean.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert contrast.corrupted.tolist() == [[9, 9, 9], [0, 0, 3]]
    assert contrast.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert contrast.answer.tolist() == [1, 2] and contrast.contrast.tolist() == [3, 4] and len(contrast) == 2
    with pytest.raises(ValueError, match="item 1: the clean prompt has 1 tokens, the corrupted one 2"):
        ContrastSet.left_padded("t", [[5, 6, 7], [8]], [[9, 9, 9], [3, 3]], [1, 2], [3, 4], ["a", "b"], pad_id=0)


def test_items_that_do_not_fit_are_dropped_and_counted(tokenizer):
    items = [
        TaskItem("When Mary and John went out, John gave it to", "When Mary and John went out, Anna gave it to",
                 " Mary", " John"),
        TaskItem("A B C to", "A B C to", " Marylebonequux", " John"),  # answer of several tokens
        TaskItem("A B C to", "A B C D E to", " Mary", " John"),  # corrupted prompt longer
        TaskItem("A B C to", "A B D to", " Mary", " Mary"),  # answer and contrast one token
        TaskItem("The year 17", "The year 17", "32", " John"),
    ]
    loaded = tokenize_items("mine", items, tokenizer)
    assert loaded.kept == (0, 4) and loaded.dropped == 3
    assert (loaded.not_one_token, loaded.length_mismatch, loaded.same_token) == ((1,), (2,), (3,))
    assert loaded.summary() == ("mine: 2 of 5 items kept (3 dropped: 1 with an answer or contrast of more than one "
                                "token; 1 whose clean and corrupted prompts differ in length; 1 whose answer and "
                                "contrast are the same token)")
    assert isinstance(loaded.contrast, ContrastSet) and len(loaded.contrast) == 2


def test_a_continuation_that_merges_with_the_prompt_is_not_one_token(tokenizer):
    # GPT-2 writes " 1440" as one token: "40" after "... year 14" is not the model's next token.
    item = TaskItem("It lasted to the year 14", "It lasted to the year 14", "40", "38")
    with pytest.raises(InputError, match="no item fits"):
        tokenize_items("greater_than", [item], tokenizer)


def test_no_item_fitting_names_task_tokenizer_and_fix(tokenizer):
    items = [TaskItem("Then it went to", "Then it came to", " Marylebonequux", " John")]
    with pytest.raises(InputError) as err:
        tokenize_items("ioi", items, tokenizer)
    message = str(err.value)
    for part in ("task 'ioi'", "gpt2-tokenizer", "0 of 1 items kept", "one token", "path=", "make_ioi.py"):
        assert part in message, (part, message)
    assert "\n" not in message


def test_read_errors_name_the_file_the_line_and_the_generator(tmp_path):
    with pytest.raises(InputError, match="unknown task 'ioi2'; the tasks are colored_objects, docstring"):
        read_items("ioi2")
    with pytest.raises(InputError, match=r"does not exist; write it with python data/make_docstring.py"):
        read_items("docstring", tmp_path / "nothing.jsonl")
    path = tmp_path / "items.jsonl"
    good = {"prompt": "a", "corrupted": "b", "answer": " c", "contrast": " d"}
    path.write_text(json.dumps(good) + "\n{oops\n")
    with pytest.raises(InputError, match="line 2 is not JSON"):
        read_items("greater_than", path)
    path.write_text(json.dumps({**good, "answer": 3}) + "\n")
    with pytest.raises(InputError, match="line 1: a greater_than item is a JSON object with the text fields"):
        read_items("greater_than", path)
    path.write_text(json.dumps(good) + "\n")
    with pytest.raises(InputError, match="subject"):  # IOI's contrast field
        read_items("ioi", path)
    path.write_text("\n\n")
    with pytest.raises(InputError, match="holds no items"):
        read_items("docstring", path)


def test_a_given_path_replaces_the_shipped_file(tmp_path, tokenizer):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"prompt": "Alice and Bob met. Bob thanked", "corrupted": "Alice and Bob met. Eve "
                                "thanked", "answer": " Alice", "subject": " Bob", "order": "ABBA"}) + "\n")
    loaded = load_task("ioi", tokenizer, path)
    assert loaded.total == 1 and loaded.contrast.texts == ("Alice and Bob met. Bob thanked",)


def test_pad_id_falls_back_to_end_of_text(tokenizer):
    class NoPad:
        pad_token_id, eos_token_id, name_or_path = None, 7, "nopad"

        def __call__(self, text, add_special_tokens=True):
            return tokenizer(text, add_special_tokens=add_special_tokens)

    items = read_items("ioi")[:3]
    contrast = tokenize_items("ioi", items, NoPad()).contrast
    assert int(contrast.clean[contrast.attention_mask == 0].unique().item()) == 7


@pytest.mark.real_model
def test_smollm2_tokenizer_keeps_all_but_greater_than():
    """Measured: colored_objects 150/150, docstring 120/120, ioi 48/48; greater-than 0/194 (SmolLM2
    writes numbers digit by digit, so the two-digit answers are two tokens)."""
    from probe import load_model

    tokenizer = load_model("smollm2-135m").tokenizer
    for task in ("colored_objects", "docstring", "ioi"):
        assert load_task(task, tokenizer).kept == tuple(range(SIZES[task]))
    with pytest.raises(InputError, match="split numbers"):
        load_task("greater_than", tokenizer)
