"""Reasoning traces for the rhythm analysis: problem files, answers, prompts, resumable generation,
a user's own traces, and the teacher-forcing alignment."""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from circuits.rhythm.problems import (
    Problem,
    TraceInputError,
    answers_match,
    extract_answer,
    load_problems,
    read_problems,
)
from circuits.rhythm.traces import (
    PAPER_INSTRUCTION,
    Trace,
    TraceConfig,
    TraceFileError,
    build_prompt,
    cut_at_eos,
    encode_prompt,
    generate_traces,
    left_pad,
    read_text_traces,
    read_traces,
    teacher_forcing,
    traces_from_text,
)
from tests.helpers import SHARED, gpt2_tokenizer, tiny_loaded, tiny_loaded_varied

PROBLEMS = [Problem(f"Tom{' really' * n} has {n} apples and buys {n + 2} more. How many now?", str(2 * n + 2))
            for n in range(5)]  # prompts of five lengths: batches are left-padded
TINY = TraceConfig(max_new_tokens=4, batch_size=2)
SAMPLED = TraceConfig(max_new_tokens=4, batch_size=2, temperature=0.7, seed=3)
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


@pytest.fixture(scope="module")
def tiny():
    return tiny_loaded("llama")  # GPT-2 tokenizer: no chat template


@pytest.fixture(scope="module")
def sharp():
    """A tiny model whose greedy tokens change along a response (the plain one repeats one token)."""
    return tiny_loaded_varied()


@pytest.fixture
def generate_calls(tiny, monkeypatch):
    """Batch sizes of the model's ``generate`` calls, in order."""
    calls, original = [], tiny.hf.generate

    def counting(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny.hf, "generate", counting)
    return calls


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# --- problems ------------------------------------------------------------------------------


def test_problems_are_read_with_their_final_numbers(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [
        json.dumps({"question": "Q1?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"}),
        "",
        json.dumps({"question": "Q2?", "answer": "#### 1,600"}),
        json.dumps({"question": "Q3?", "answer": "#### -2.50"}),
        json.dumps({"question": "Q4?"}),
        json.dumps({"question": "Q5?", "answer": 12}),
    ])
    problems = read_problems(path)
    assert [p.question for p in problems] == ["Q1?", "Q2?", "Q3?", "Q4?", "Q5?"]
    assert [p.reference for p in problems] == ["7", "1600", "-2.5", None, "12"]
    assert problems[1].source == f"{path} line 3"
    assert load_problems(str(path), limit=2) == problems[:2]


def test_the_shared_gsm8k_file_parses():
    problems = load_problems(SHARED / "data" / "gsm8k" / "test.jsonl")
    assert len(problems) == 1319
    assert all(p.reference is not None and p.question for p in problems)
    assert problems[0].reference == json.loads(
        (SHARED / "data" / "gsm8k" / "test.jsonl").read_text().splitlines()[0])["answer"].split("####")[-1].strip()


BAD_PROBLEM_FILES = {
    "missing": (None, "does not exist"),
    "not json": (['{"question": "a", "answer": "#### 1"}', "{not json"], "line 2 is not JSON"),
    "array": (['["a", "b"]'], "line 1 is a JSON list"),
    "no question": (['{"answer": "#### 1"}'], "line 1: no question"),
    "blank question": (['{"question": "  ", "answer": "#### 1"}'], "line 1: no question"),
    "answer without number": (['{"question": "a", "answer": "#### many"}'], "line 1: the answer has no final number"),
    "empty": ([], "holds no problems"),
    "blank lines only": (["", "  "], "holds no problems"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROBLEM_FILES))
def test_bad_problem_files_name_the_file_the_line_and_the_fix(tmp_path, case):
    lines, message = BAD_PROBLEM_FILES[case]
    path = tmp_path / "problems.jsonl"
    if lines is not None:
        write_lines(path, lines)
    with pytest.raises(TraceInputError, match=message) as raised:
        load_problems(path)
    assert str(path) in str(raised.value)
    assert '"question"' in str(raised.value) or "####" in str(raised.value)  # the fix shows the format


def test_a_folder_is_not_a_problem_file(tmp_path):
    with pytest.raises(TraceInputError, match="is a folder"):
        read_problems(tmp_path)


def test_a_hub_id_fails_in_seconds_without_a_hub(monkeypatch):
    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr("circuits.rhythm.problems.hub_reachable", lambda: False)
    start = time.perf_counter()
    with pytest.raises(TraceInputError, match="does not answer.*JSON-lines file"):
        load_problems("openai/gsm8k")
    assert time.perf_counter() - start < 2.0


def test_a_hub_data_set_is_read_through_datasets(monkeypatch):
    asked = []

    def load_dataset(name, config, split):
        asked.append((name, config, split))
        if name != "openai/gsm8k":
            raise FileNotFoundError(f"Dataset '{name}' doesn't exist on the Hub")
        return [{"question": "Q?", "answer": "so\n#### 1,234"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.setattr("circuits.rhythm.problems.hub_reachable", lambda: True)
    assert load_problems("openai/gsm8k") == [Problem("Q?", "1234", "openai/gsm8k (main, test) row 0")]
    with pytest.raises(TraceInputError, match="cannot load 'me/nothing'.*doesn't exist.*JSON-lines file"):
        load_problems("me/nothing", split="train")
    assert asked == [("openai/gsm8k", "main", "test"), ("me/nothing", "main", "train")]


# --- answers -------------------------------------------------------------------------------


@pytest.mark.parametrize("response, answer", [
    ("So 3 + 4 = 7. The answer is \\boxed{7}.", "7"),
    ("first \\boxed{3}, then 5, finally \\boxed{\\text{about } 1,200.50 dollars}", "1200.5"),
    ("\\boxed{12} then a cut-off \\boxed{4", "12"),
    ("no box: 16 - 3 - 4 = 9 eggs, 9 * 2 = $18.", "18"),
    ("the list 3,4,5 ends in 5", "5"),
    ("\\boxed{x}", None),
    ("I do not know.", None),
    ("\\boxed{-3}", "-3"),
])
def test_the_answer_is_the_last_number_of_the_last_box_or_of_the_text(response, answer):
    assert extract_answer(response) == answer


def test_answers_match_as_numbers():
    assert answers_match("18", "18") and answers_match("18.0", "18")
    assert answers_match("17", "18") is False
    assert answers_match(None, "18") is False
    assert answers_match("18", None) is None


# --- prompts -------------------------------------------------------------------------------


def test_a_tokenizer_without_chat_template_gets_plain_text():
    tokenizer = gpt2_tokenizer()
    assert tokenizer.chat_template is None
    assert build_prompt(tokenizer, "What is 2+2?") == f"What is 2+2?\n{PAPER_INSTRUCTION}\n"
    assert build_prompt(tokenizer, "Q", "Think.") == "Q\nThink.\n"


def test_the_chat_template_wraps_question_and_instruction_once_with_one_bos():
    from transformers import GPT2Tokenizer

    tokenizer = GPT2Tokenizer.from_pretrained(str(SHARED / "data" / "gpt2-tokenizer"), add_bos_token=True)
    tokenizer.chat_template = CHAT_TEMPLATE
    prompt = build_prompt(tokenizer, "What is 2+2?")
    assert prompt == f"<|endoftext|><|user|>What is 2+2?\n{PAPER_INSTRUCTION}\n<|assistant|>\n"
    ids = encode_prompt(tokenizer, prompt)
    assert ids[0] == tokenizer.bos_token_id and ids[1] != tokenizer.bos_token_id  # the template's BOS, not two
    assert encode_prompt(tokenizer, "plain")[0] == tokenizer.bos_token_id  # added where the text has none


# --- generation ----------------------------------------------------------------------------


def test_generation_records_prompt_response_and_settings(tiny, tmp_path, generate_calls):
    traces = generate_traces(tiny, PROBLEMS, TINY, tmp_path / "t.jsonl", progress=False)
    assert generate_calls == [2, 2, 1]
    assert [t.index for t in traces] == list(range(5))
    for trace, problem in zip(traces, PROBLEMS):
        assert trace.question == problem.question and trace.reference == problem.reference
        assert trace.prompt == build_prompt(tiny.tokenizer, problem.question)
        assert list(trace.prompt_ids) == encode_prompt(tiny.tokenizer, trace.prompt)
        assert len(trace.response_ids) == 4 and trace.stopped_at_eos is False
        assert trace.response == tiny.tokenizer.decode(list(trace.response_ids))
        assert trace.correct == answers_match(extract_answer(trace.response), problem.reference)
        assert trace.generation == {"model": "tiny", "max_new_tokens": 4, "temperature": 0.0, "seed": 0,
                                    "instruction": PAPER_INSTRUCTION, "chat_template": False}
    assert read_traces(tmp_path / "t.jsonl") == traces


def test_greedy_responses_are_the_argmax_of_the_predicting_rows(sharp, tmp_path):
    """Under teacher forcing (one unpadded row), row t-1 predicts token t: the greedy tokens,
    generated in left-padded batches, are its argmax; the tokens' own rows predict others."""
    traces = generate_traces(sharp, PROBLEMS, TINY, tmp_path / "t.jsonl", progress=False)
    for trace in traces:
        forced = teacher_forcing(trace)
        with torch.no_grad():
            logits = sharp.hf(forced.input_ids[None]).logits[0]
        assert logits[list(forced.predicting_rows)].argmax(-1).tolist() == list(trace.response_ids)
        assert logits[list(forced.response_rows)].argmax(-1).tolist() != list(trace.response_ids)
        assert forced.input_ids[list(forced.response_rows)].tolist() == list(trace.response_ids)


def test_eos_ends_one_row_of_a_batch_and_is_not_kept(tiny, tmp_path, monkeypatch):
    """Sampled rows differ; making a token row 0 drew at step 1 an EOS ends that row only."""
    config = TraceConfig(max_new_tokens=4, batch_size=5, temperature=1.0, seed=7)
    free = generate_traces(tiny, PROBLEMS, config, tmp_path / "free.jsonl", progress=False)
    eos = free[0].response_ids[1]
    monkeypatch.setattr(tiny.hf.generation_config, "eos_token_id", eos)
    stopped = generate_traces(tiny, PROBLEMS, config, tmp_path / "eos.jsonl", progress=False)
    for before, after in zip(free, stopped):
        expected = before.response_ids[:before.response_ids.index(eos)] if eos in before.response_ids \
            else before.response_ids
        assert after.response_ids == expected
        assert after.stopped_at_eos == (eos in before.response_ids)
    assert stopped[0].stopped_at_eos and not all(t.stopped_at_eos for t in stopped)


def test_batches_are_padded_on_the_left_and_cut_at_the_first_eos():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert cut_at_eos([4, 9, 2, 9, 9], {9}) == ([4], True)
    assert cut_at_eos([4, 5], {9}) == ([4, 5], False)


def test_sampling_is_reproducible_by_seed_and_leaves_the_global_rng_alone(tiny, tmp_path):
    state = torch.get_rng_state()
    first = generate_traces(tiny, PROBLEMS[:2], SAMPLED, tmp_path / "a.jsonl", progress=False)
    again = generate_traces(tiny, PROBLEMS[:2], SAMPLED, tmp_path / "b.jsonl", progress=False)
    other = generate_traces(tiny, PROBLEMS[:2], TraceConfig(max_new_tokens=4, batch_size=2, temperature=0.7, seed=4),
                            tmp_path / "c.jsonl", progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    assert [t.response_ids for t in first] == [t.response_ids for t in again]
    assert [t.response_ids for t in first] != [t.response_ids for t in other]


# --- resuming ------------------------------------------------------------------------------


def cut_mid_line(path: Path, keep_lines: int) -> None:
    """What a kill leaves: the first ``keep_lines`` lines and half of the next one."""
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:keep_lines]) + b"\n" + lines[keep_lines][: len(lines[keep_lines]) // 2])


def test_a_killed_run_resumes_to_the_same_file(tiny, tmp_path, generate_calls):
    whole = tmp_path / "whole.jsonl"
    generate_traces(tiny, PROBLEMS, SAMPLED, whole, progress=False)
    killed = tmp_path / "killed.jsonl"
    killed.write_bytes(whole.read_bytes())
    cut_mid_line(killed, keep_lines=3)  # header, traces 0 and 1, half of trace 2 (first of the second batch)
    generate_calls.clear()
    traces = generate_traces(tiny, PROBLEMS, SAMPLED, killed, progress=False)
    assert generate_calls == [2, 1]  # problems 2-3 and 4: traces 0 and 1 are not regenerated
    assert killed.read_bytes() == whole.read_bytes()
    assert traces == read_traces(whole)


def test_a_kill_inside_a_batch_regenerates_only_the_unfinished(tiny, tmp_path, generate_calls):
    out = tmp_path / "t.jsonl"
    generate_traces(tiny, PROBLEMS, TINY, out, progress=False)
    finished = out.read_bytes().split(b"\n")[:4]  # header, traces 0 to 2
    cut_mid_line(out, keep_lines=4)
    generate_calls.clear()
    traces = generate_traces(tiny, PROBLEMS, TINY, out, progress=False)
    assert generate_calls == [2]  # problems 3 and 4 only
    lines = out.read_bytes().split(b"\n")
    assert lines[:4] == finished and lines[-1] == b"" and len(lines) == 7
    assert sorted(json.loads(line)["index"] for line in lines[1:-1]) == list(range(5))
    assert [t.index for t in traces] == list(range(5))


def test_a_finished_file_is_read_not_regenerated(tiny, tmp_path, generate_calls):
    out = tmp_path / "t.jsonl"
    traces = generate_traces(tiny, PROBLEMS[:3], TINY, out, progress=False)
    generate_calls.clear()
    assert generate_traces(tiny, PROBLEMS[:3], TINY, out, progress=False) == traces
    assert generate_calls == []


@pytest.mark.parametrize("problems, config, differing", [
    (PROBLEMS[:2], TraceConfig(max_new_tokens=3, batch_size=2), "max_new_tokens"),
    (PROBLEMS[1:3], TINY, "problems"),
    (PROBLEMS[:2], SAMPLED, "seed, temperature"),
])
def test_a_file_for_other_settings_is_refused_and_left_alone(tiny, tmp_path, problems, config, differing):
    out = tmp_path / "t.jsonl"
    generate_traces(tiny, PROBLEMS[:2], TINY, out, progress=False)
    before = out.read_bytes()
    with pytest.raises(TraceFileError, match=differing) as raised:
        generate_traces(tiny, problems, config, out, progress=False)
    assert str(out) in str(raised.value) and "delete it" in str(raised.value)
    assert out.read_bytes() == before


def test_a_batch_size_change_still_resumes(tiny, tmp_path, generate_calls):
    out = tmp_path / "t.jsonl"
    generate_traces(tiny, PROBLEMS[:2], TINY, out, progress=False)
    generate_calls.clear()
    generate_traces(tiny, PROBLEMS[:2], TraceConfig(max_new_tokens=4, batch_size=1), out, progress=False)
    assert generate_calls == []


def test_a_file_that_is_not_a_trace_file_is_refused(tiny, tmp_path):
    out = write_lines(tmp_path / "notes.jsonl", ["some notes", "more"])
    with pytest.raises(TraceFileError, match="not a trace file"):
        generate_traces(tiny, PROBLEMS[:1], TINY, out, progress=False)
    assert out.read_text() == "some notes\nmore\n"


def test_bad_settings_and_arguments_are_refused(tiny, tmp_path):
    for bad in ({"max_new_tokens": 0}, {"temperature": -0.1}, {"temperature": float("nan")}, {"batch_size": 0}):
        with pytest.raises(ValueError):
            TraceConfig(**bad)
    with pytest.raises(ValueError, match="at least one problem"):
        generate_traces(tiny, [], TINY, tmp_path / "t.jsonl", progress=False)


# --- a user's own traces and the alignment -------------------------------------------------


def test_text_traces_tokenize_prompt_and_response_apart(tokenizer):
    trace = traces_from_text(tokenizer, "Q: 6 times 7?\n", "6 * 7 = 42, so \\boxed{42}", reference="#### 42")
    assert list(trace.prompt_ids) == tokenizer("Q: 6 times 7?\n")["input_ids"]
    assert list(trace.response_ids) == tokenizer("6 * 7 = 42, so \\boxed{42}", add_special_tokens=False)["input_ids"]
    assert (trace.predicted, trace.reference, trace.correct) == ("42", "42", True)
    assert trace.generation is None and trace.stopped_at_eos is None
    assert Trace.from_record(json.loads(json.dumps(trace.to_record()))) == trace


def test_text_trace_files_are_read_and_checked(tokenizer, tmp_path):
    path = write_lines(tmp_path / "mine.jsonl", [json.dumps({"prompt": "Q?\n", "response": "5"}),
                                                 json.dumps({"prompt": "R?\n", "response": "x 6", "answer": "7"})])
    traces = read_text_traces(path, tokenizer)
    assert [(t.index, t.predicted, t.correct) for t in traces] == [(0, "5", None), (1, "6", False)]
    for lines, message in ([['{"prompt": "Q"}'], "line 1: a trace needs"], [["[]"], "line 1 is a JSON list"],
                           [['{"prompt": "Q", "response": "r", "answer": "lots"}'], "line 1: \"answer\""],
                           [[], "holds no traces"]):
        with pytest.raises(TraceInputError, match=message) as raised:
            read_text_traces(write_lines(tmp_path / "bad.jsonl", lines), tokenizer)
        assert str(tmp_path / "bad.jsonl") in str(raised.value)


def hand_made(prompt_ids: tuple[int, ...], response_ids: tuple[int, ...]) -> Trace:
    return Trace(index=0, question=None, prompt="p", prompt_ids=prompt_ids, response="r", response_ids=response_ids,
                 reference=None, predicted=None, correct=None, stopped_at_eos=None, generation=None)


def test_teacher_forcing_rows_on_a_hand_made_trace():
    forced = teacher_forcing(hand_made((11, 12, 13, 14, 15), (21, 22, 23)))
    assert forced.input_ids.tolist() == [11, 12, 13, 14, 15, 21, 22, 23]
    assert forced.response_rows == range(5, 8)  # each response token's own row
    assert forced.predicting_rows == range(4, 7)  # the rows whose logits chose them
    assert [forced.input_ids[row + 1].item() for row in forced.predicting_rows] == [21, 22, 23]
    empty = teacher_forcing(hand_made((11, 12), ()))
    assert len(empty.response_rows) == len(empty.predicting_rows) == 0
    with pytest.raises(ValueError, match="at least one prompt token"):
        hand_made((), (21,))


# --- the real model ------------------------------------------------------------------------


@pytest.mark.real_model
def test_smollm2_traces_use_its_chat_template(tmp_path):
    from probe import load_model

    model = load_model("smollm2-135m")
    problems = load_problems(SHARED / "data" / "gsm8k" / "test.jsonl", limit=2)
    traces = generate_traces(model, problems, TraceConfig(max_new_tokens=48, batch_size=2), tmp_path / "t.jsonl",
                             progress=False)
    for trace, problem in zip(traces, problems):
        assert trace.prompt.startswith("<|im_start|>system") and trace.prompt.endswith("<|im_start|>assistant\n")
        assert f"<|im_start|>user\n{problem.question}\n{PAPER_INSTRUCTION}<|im_end|>" in trace.prompt
        assert trace.prompt_ids[0] == model.tokenizer.bos_token_id != trace.prompt_ids[1]
        assert trace.generation["chat_template"] is True
        assert 0 < len(trace.response_ids) <= 48 and any(c.isalpha() for c in trace.response)
        assert "<|im_start|>" not in trace.response


def test_read_traces_names_missing_empty_and_unfinished_files(tiny, tmp_path):
    with pytest.raises(TraceFileError, match="does not exist"):
        read_traces(tmp_path / "missing.jsonl")
    with pytest.raises(TraceFileError, match="is a folder"):
        read_traces(tmp_path)
    with pytest.raises(TraceFileError, match="is empty"):
        read_traces(write_lines(tmp_path / "empty.jsonl", []))
    out = tmp_path / "t.jsonl"
    generate_traces(tiny, PROBLEMS[:1], TINY, out, progress=False)
    write_lines(out, out.read_text(encoding="utf-8").splitlines()[:1])  # a run killed before its first trace
    with pytest.raises(TraceFileError, match="holds no traces.*rerun"):
        read_traces(out)
    with pytest.raises(TraceFileError, match="not a trace file"):
        read_traces(write_lines(tmp_path / "other.jsonl", ['{"kind": "header", "settings": {"format": "x"}}']))
