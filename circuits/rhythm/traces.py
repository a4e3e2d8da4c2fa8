"""Reasoning traces for the rhythm analysis: prompts, generation, a user's own traces, alignment.

Context:
    Li et al. (arXiv 2510.13554, section 4) sample responses to GSM8K problems under the prompt
    "Please reason step by step, and put your final answer within \\boxed{}." and run one more
    forward pass over prompt + response with eager attention; every metric (head span, WAAD, FAI,
    token entropy) is read on the rows of the response. This module makes those traces:

    - :func:`circuits.rhythm.problems.load_problems` reads GSM8K JSON lines or a hub data set
      (the problems, and their answers, live in :mod:`circuits.rhythm.problems`);
    - :func:`build_prompt` applies the paper's instruction through the tokenizer's chat template;
    - :func:`generate_traces` generates in left-padded batches (greedy, or sampling at a
      temperature with a seed) and appends one JSON line per finished trace to a file that a
      killed run resumes (the header-checked, fsync'd cache of :mod:`circuits.sinks.cache`);
    - :func:`traces_from_text` and :func:`read_text_traces` build the same record from text a
      user's own model produced;
    - :func:`teacher_forcing` gives the input ids of prompt + response and the rows to read.

Alignment (decided here, used by the analysis):
    With prompt ids ``p_0 .. p_{P-1}`` and response ids ``r_0 .. r_{R-1}`` fed as one sequence,
    response token ``r_k`` sits at position ``t = P + k``. Its *attention row* is row ``t``, the
    token's own position: the paper's "rows corresponding to response tokens" (WAAD, FAI, head
    span). The row whose logits *predict* ``r_k`` is row ``t - 1`` (token entropy of the choice
    of ``r_k``). :class:`TeacherForcing` carries both ranges; in a left-padded batch add the
    row's padding to each.

Answers:
    The predicted answer is the last number inside the last ``\\boxed{...}`` of the response, or,
    without a box, the last number of the response; numbers lose thousands commas and trailing
    zeros (``1,000.50`` -> ``1000.5``). Fractions such as ``\\frac{1}{2}`` are not evaluated. A
    trace is correct when that number equals the reference number after GSM8K's ``####``.

Deviation:
    Sampled traces are seeded per batch (``seed +`` the index of the batch's first problem), so
    rerunning the same batches reproduces them, but a resumed run whose batches start elsewhere
    draws other (equally valid) samples. Greedy traces do not depend on batching beyond
    floating-point noise, so ``batch_size`` is not part of a trace file's settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from circuits.sinks.cache import CacheCorrupt, CacheMismatch, append_record, check_cache_file, start_cache
from circuits.rhythm.problems import (
    Problem,
    TraceInputError,
    answer_text,
    answers_match,
    extract_answer,
    json_lines,
    parse_reference,
    problems_digest,
)

PAPER_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
"""The paper's instruction, appended to each question."""

FORMAT = "headscope-rhythm-traces/1"
"""Written into every trace file's header; a file of another format is refused."""

TEXT_TRACE_EXAMPLE = '{"prompt": "...", "response": "..."}'
TRACE_FILE_FIX = "delete it or pass another output path"


class TraceFileError(ValueError):
    """A trace output file written for other settings, or not written by :func:`generate_traces`."""


@dataclass(frozen=True)
class TraceConfig:
    """How traces are generated.

    Attributes:
        max_new_tokens: most tokens generated per response (generation also stops at EOS).
        temperature: 0 for greedy decoding; above 0, plain temperature sampling (no top-k or
            top-p cut). The paper samples at 0.7.
        seed: seeds each sampled batch (ignored when greedy).
        batch_size: problems per ``generate`` call (left padding). Not a setting of the results.
        instruction: appended to each question on its own line (default: the paper's).
    """

    max_new_tokens: int = 512
    temperature: float = 0.0
    seed: int = 0
    batch_size: int = 4
    instruction: str = PAPER_INSTRUCTION

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be positive, got {self.max_new_tokens}")
        if not self.temperature >= 0.0:
            raise ValueError(f"temperature must be >= 0 (0: greedy), got {self.temperature}; the paper uses 0.7")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")

    @property
    def sampling(self) -> bool:
        return self.temperature > 0.0

    def settings(self) -> dict:
        """The settings that decide the traces (``batch_size`` left out), JSON-ready."""
        settings = asdict(self)
        settings.pop("batch_size")
        return settings

    def generate_kwargs(self) -> dict:
        """Keyword arguments for HF ``generate``: greedy, or pure temperature sampling."""
        if not self.sampling:
            return {"max_new_tokens": self.max_new_tokens, "do_sample": False}
        return {"max_new_tokens": self.max_new_tokens, "do_sample": True, "temperature": self.temperature,
                "top_k": 0, "top_p": 1.0}


@dataclass(frozen=True)
class Trace:
    """One prompt and response, as the analysis reads them.

    Attributes:
        index: position of the problem in the problem list (or of the line in a user's file).
        question: the problem text (None for a user's trace given as text only).
        prompt: the full prompt text the model read (chat template applied where there is one).
        prompt_ids: its token ids.
        response: the response text, decoded from ``response_ids``.
        response_ids: the generated token ids, up to and without the EOS token.
        reference: the reference final number (None if unknown).
        predicted: the response's final number (see the module docstring), None if it has none.
        correct: whether ``predicted`` equals ``reference`` (None when there is no reference).
        stopped_at_eos: the model ended the response (False: cut at ``max_new_tokens``; None:
            unknown, for a user's trace).
        generation: the settings that made it (model, :meth:`TraceConfig.settings`,
            ``chat_template``); None for a user's trace.
    """

    index: int
    question: str | None
    prompt: str
    prompt_ids: tuple[int, ...]
    response: str
    response_ids: tuple[int, ...]
    reference: str | None
    predicted: str | None
    correct: bool | None
    stopped_at_eos: bool | None
    generation: dict | None

    def __post_init__(self) -> None:
        if not self.prompt_ids:
            raise ValueError("a trace needs at least one prompt token: the row predicting the first "
                             "response token is the prompt's last")

    def to_record(self) -> dict:
        """The trace as a JSON-ready dict (one line of a trace file)."""
        return {**asdict(self), "prompt_ids": list(self.prompt_ids), "response_ids": list(self.response_ids)}

    @classmethod
    def from_record(cls, record: dict) -> Trace:
        """The trace a :meth:`to_record` dict describes (extra keys are ignored)."""
        values = {f.name: record[f.name] for f in fields(cls)}
        return cls(**{**values, "prompt_ids": tuple(values["prompt_ids"]),
                      "response_ids": tuple(values["response_ids"])})


@dataclass(frozen=True)
class TeacherForcing:
    """Prompt + response as one input, and the rows of it that the analysis reads.

    Attributes:
        input_ids: prompt ids then response ids.
        response_rows: attention rows of the response tokens: row ``t`` is token ``t``'s own
            position (WAAD, FAI, head span: "rows corresponding to response tokens").
        predicting_rows: rows whose logits predict the response tokens, ``response_rows``
            shifted by one: row ``t - 1`` predicts token ``t`` (token entropy).
    """

    input_ids: Int[Tensor, " seq"]
    response_rows: range
    predicting_rows: range


def teacher_forcing(trace: Trace) -> TeacherForcing:
    """The input ids of ``trace`` (prompt + response) and its response and predicting rows.

    Example:
        >>> tf = teacher_forcing(trace)  # prompt of 5 tokens, response of 3
        >>> tf.response_rows, tf.predicting_rows
        (range(5, 8), range(4, 7))
    """
    start, end = len(trace.prompt_ids), len(trace.prompt_ids) + len(trace.response_ids)
    ids = torch.tensor([*trace.prompt_ids, *trace.response_ids], dtype=torch.long)
    return TeacherForcing(input_ids=ids, response_rows=range(start, end), predicting_rows=range(start - 1, end - 1))


# --- prompts -------------------------------------------------------------------------------


def build_prompt(tokenizer, question: str, instruction: str = PAPER_INSTRUCTION) -> str:
    """The prompt text: ``question``, a newline and ``instruction`` as the user's message.

    With a chat template the message goes through
    ``tokenizer.apply_chat_template(..., add_generation_prompt=True)`` (so the prompt ends where
    the assistant's answer starts). A tokenizer without a chat template (a base model such as
    GPT-2) gets the message as plain text followed by a newline.
    """
    message = f"{question}\n{instruction}"
    if not has_chat_template(tokenizer):
        return f"{message}\n"
    return tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                         add_generation_prompt=True)


def has_chat_template(tokenizer) -> bool:
    return getattr(tokenizer, "chat_template", None) is not None


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Token ids of a prompt text, adding the tokenizer's special tokens unless the text already
    starts with its BOS token (chat templates write it themselves; adding it twice would shift
    every position)."""
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not (bos and text.startswith(bos))
    return list(tokenizer(text, add_special_tokens=add_special)["input_ids"])


# --- generation ----------------------------------------------------------------------------


def generation_settings(model, config: TraceConfig) -> dict:
    """What decides a trace: the model's name, the config's settings, and the prompt format."""
    return {"model": model.name, **config.settings(), "chat_template": has_chat_template(model.tokenizer)}


def trace_header(model, problems: Sequence[Problem], config: TraceConfig) -> dict:
    """The settings line of a trace file: a run resumes a file only under the same header."""
    return {"format": FORMAT, "problems": problems_digest(problems), "n_problems": len(problems),
            **generation_settings(model, config)}


def generate_traces(model, problems: Sequence[Problem], config: TraceConfig, out: str | Path,
                    progress: bool = True) -> list[Trace]:
    """Generate one trace per problem, appending each finished one to ``out`` as a JSON line.

    ``out`` starts with a header line (:func:`trace_header`). A run on an existing ``out`` reads
    the traces already there and generates only the others; a partial last line left by a kill
    is dropped. Lines are written with one ``write`` + ``fsync`` each
    (:mod:`circuits.sinks.cache`).

    Args:
        model: a :class:`probe.models.loading.LoadedModel` in eval mode.
        problems: the problems, in order; trace ``index`` is the position in this list.
        config: generation settings.
        out: the JSON-lines trace file.
        progress: show a ``tqdm`` bar.

    Returns:
        All traces, in problem order (read and generated).

    Raises:
        TraceFileError: ``out`` was written for other settings, or is not a trace file.
        ValueError: no problems, or the model is in training mode.
    """
    if not problems:
        raise ValueError("generate_traces needs at least one problem")
    if model.hf.training:
        raise ValueError("the model is in training mode (dropout on); call model.hf.eval() first")
    out = Path(out)
    done = {r["index"]: Trace.from_record(r) for r in open_trace_file(out, trace_header(model, problems, config))}
    todo = [i for i in range(len(problems)) if i not in done]
    with tqdm(total=len(problems), initial=len(problems) - len(todo), desc="traces", disable=not progress) as bar:
        for first in range(0, len(todo), config.batch_size):
            indices = todo[first:first + config.batch_size]
            for trace in generate_batch(model, [problems[i] for i in indices], config, indices):
                append_record(out, trace.to_record())
                done[trace.index] = trace
            bar.update(len(indices))
    return [done[i] for i in range(len(problems))]


def open_trace_file(out: Path, header: dict) -> list[dict]:
    """The trace records already in ``out`` (none for a new file, which gets ``header``).

    Raises:
        TraceFileError: ``out`` holds another header (naming the settings that differ) or is
            not a trace file.
    """
    try:
        return start_cache(out, header)
    except CacheMismatch as err:
        found = check_cache_file(out)[0].get("settings") or {}
        differ = sorted(k for k in {*header, *found} if header.get(k) != found.get(k))
        raise TraceFileError(f"trace file {out} was written for other settings (differing: {', '.join(differ)}); "
                             f"{TRACE_FILE_FIX}, or rerun with the settings it was written for") from err
    except CacheCorrupt as err:
        raise TraceFileError(f"{out} is not a trace file written by generate_traces (no settings header, or a "
                             f"line that is not JSON); {TRACE_FILE_FIX}") from err


def read_traces(path: str | Path) -> list[Trace]:
    """The traces of a file written by :func:`generate_traces`, in problem order.

    Raises:
        TraceFileError: the file is missing, empty, not a trace file, or holds no trace yet
            (only its settings line: generation stopped before its first batch finished).
    """
    path = Path(path)
    if not path.is_file():
        state = "is a folder" if path.is_dir() else "does not exist"
        raise TraceFileError(f"trace file {path} {state}; write one with `headscope rhythm traces` (generate_traces)")
    records = check_trace_file(path)
    if not records:
        raise TraceFileError(f"trace file {path} is empty; write traces into it with `headscope rhythm traces` "
                             "(generate_traces)")
    if len(records) == 1:
        raise TraceFileError(f"trace file {path} holds no traces, only its settings line (generation stopped before "
                             "its first batch finished); rerun `headscope rhythm traces` to continue it")
    return sorted((Trace.from_record(r) for r in records[1:]), key=lambda t: t.index)


def check_trace_file(path: str | Path) -> list[dict]:
    """The records of ``path``, header first: none when it is missing or blank.

    Reads without writing (a run can call it before loading a model).

    Raises:
        TraceFileError: ``path`` holds something other than a trace file of this format.
    """
    path = Path(path)
    try:
        records = check_cache_file(path)
    except CacheCorrupt as err:
        raise TraceFileError(f"{path} is not a trace file written by generate_traces; {TRACE_FILE_FIX}") from err
    if records and records[0].get("settings", {}).get("format") != FORMAT:
        raise TraceFileError(f"{path} is not a trace file ({FORMAT}): its settings line names another format; "
                             f"{TRACE_FILE_FIX}")
    return records


def generate_batch(model, problems: Sequence[Problem], config: TraceConfig, indices: Sequence[int]) -> list[Trace]:
    """Traces of ``problems`` (numbered ``indices``) from one left-padded ``generate`` call."""
    tokenizer = model.tokenizer
    prompts = [build_prompt(tokenizer, p.question, config.instruction) for p in problems]
    prompt_ids = [encode_prompt(tokenizer, text) for text in prompts]
    responses = generate_responses(model, prompt_ids, config, seed=config.seed + indices[0])
    settings = generation_settings(model, config)
    traces = []
    for index, problem, prompt, ids, (response_ids, stopped) in zip(indices, problems, prompts, prompt_ids,
                                                                    responses):
        response = tokenizer.decode(response_ids)
        predicted = extract_answer(response)
        traces.append(Trace(index=index, question=problem.question, prompt=prompt, prompt_ids=tuple(ids),
                            response=response, response_ids=tuple(response_ids), reference=problem.reference,
                            predicted=predicted, correct=answers_match(predicted, problem.reference),
                            stopped_at_eos=stopped, generation=settings))
    return traces


def generate_responses(model, prompt_ids: Sequence[Sequence[int]], config: TraceConfig,
                       seed: int) -> list[tuple[list[int], bool]]:
    """Per prompt, the generated ids up to (without) the first EOS, and whether an EOS came."""
    device = next(model.hf.parameters()).device
    input_ids, attention_mask = left_pad(prompt_ids, model.tokenizer.pad_token_id)
    eos = eos_ids(model)
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # inside fork_rng: the caller's random state is left as it was
        output = model.hf.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                   pad_token_id=model.tokenizer.pad_token_id, eos_token_id=sorted(eos),
                                   **config.generate_kwargs())
    new = output[:, input_ids.shape[1]:].tolist()  # [batch, new tokens]
    return [cut_at_eos(ids, eos) for ids in new]


def left_pad(prompt_ids: Sequence[Sequence[int]],
             pad_id: int) -> tuple[Int[Tensor, "batch seq"], Int[Tensor, "batch seq"]]:
    """Input ids padded on the left with ``pad_id`` to one length, and their attention mask."""
    width = max(len(ids) for ids in prompt_ids)
    rows = [[pad_id] * (width - len(ids)) + list(ids) for ids in prompt_ids]
    mask = [[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids]
    return torch.tensor(rows, dtype=torch.long), torch.tensor(mask, dtype=torch.long)


def eos_ids(model) -> set[int]:
    """Token ids that end a response: the generation config's EOS ids and the tokenizer's."""
    configured = getattr(model.hf.generation_config, "eos_token_id", None)
    ids = set(configured if isinstance(configured, (list, tuple)) else [configured])
    ids.add(model.tokenizer.eos_token_id)
    ids.discard(None)
    if not ids:
        raise ValueError(f"model {model.name!r} has no EOS token; generation could not stop before max_new_tokens")
    return ids


def cut_at_eos(ids: list[int], eos: set[int]) -> tuple[list[int], bool]:
    """``ids`` before the first EOS (what follows is padding), and whether there was one."""
    for position, token in enumerate(ids):
        if token in eos:
            return ids[:position], True
    return ids, False


# --- a user's own traces -------------------------------------------------------------------


def traces_from_text(tokenizer, prompt: str, response: str, reference: str | None = None,
                     index: int = 0) -> Trace:
    """A trace from text a user's model produced, tokenized for the model to be analysed.

    The prompt and the response are tokenized separately (the prompt as :func:`encode_prompt`
    does, the response without special tokens), so the response starts on a token boundary as
    it did when it was generated. ``prompt`` should be the full text the model read, chat
    template included. ``reference`` is a GSM8K answer (``"... #### 42"``) or a number.
    """
    prompt_ids = encode_prompt(tokenizer, prompt)
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    ref = parse_reference(reference) if reference is not None else None
    predicted = extract_answer(response)
    return Trace(index=index, question=None, prompt=prompt, prompt_ids=tuple(prompt_ids), response=response,
                 response_ids=tuple(response_ids), reference=ref, predicted=predicted,
                 correct=answers_match(predicted, ref), stopped_at_eos=None, generation=None)


def read_text_traces(path: str | Path, tokenizer) -> list[Trace]:
    """Traces of a JSON-lines file of ``{"prompt", "response"}`` records (optional ``"answer"``).

    Raises:
        TraceInputError: naming the file, the line and the fix, for a missing file, a line that
            is not a JSON object, a record without string prompt and response, or no records.
    """
    path = Path(path)
    traces = [_text_trace(path, number, record, tokenizer, index)
              for index, (number, record) in enumerate(json_lines(path, TEXT_TRACE_EXAMPLE))]
    if not traces:
        raise TraceInputError(f"trace file {path} holds no traces; add one JSON object per line, "
                              f"such as {TEXT_TRACE_EXAMPLE}")
    return traces


def _text_trace(path: Path, number: int, record: dict, tokenizer, index: int) -> Trace:
    prompt, response, answer = record.get("prompt"), record.get("response"), answer_text(record.get("answer"))
    if not isinstance(prompt, str) or not prompt or not isinstance(response, str):
        raise TraceInputError(f"{path} line {number}: a trace needs a non-empty string \"prompt\" and a string "
                              f"\"response\"; write it as {TEXT_TRACE_EXAMPLE}")
    if answer is not None and parse_reference(answer) is None:
        raise TraceInputError(f"{path} line {number}: \"answer\" has no final number ({answer[-40:]!r}); "
                              "write it as \"42\" or \"... #### 42\", or leave it out")
    return traces_from_text(tokenizer, prompt, response, answer, index)
