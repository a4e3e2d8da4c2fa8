"""Reasoning traces for the rhythm analysis: problems, prompts, generation, alignment.

Context:
    Li et al. (arXiv 2510.13554, section 4) sample responses to GSM8K problems under the prompt
    "Please reason step by step, and put your final answer within \\boxed{}." and run one more
    forward pass over prompt + response with eager attention; every metric (head span, WAAD, FAI,
    token entropy) is read on the rows of the response. This module makes those traces:

    - :func:`load_problems` reads GSM8K JSON lines (``{"question", "answer": "... #### 42"}``)
      or a hub data set (``openai/gsm8k``, config ``main``, split ``test``);
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

import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Iterator, Sequence

import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from circuits.sinks.cache import CacheCorrupt, CacheMismatch, append_record, check_cache_file, start_cache
from probe.models.hub import hub_host, hub_offline, hub_reachable

PAPER_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
"""The paper's instruction, appended to each question."""

GSM8K_HUB = "openai/gsm8k"
FORMAT = "headscope-rhythm-traces/1"
"""Written into every trace file's header; a file of another format is refused."""

NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")
BOXED = "\\boxed{"
PROBLEM_EXAMPLE = '{"question": "...", "answer": "... #### 42"}'
TEXT_TRACE_EXAMPLE = '{"prompt": "...", "response": "..."}'
TRACE_FILE_FIX = "delete it or pass another output path"


class TraceInputError(ValueError):
    """A problem or trace file that cannot be used, naming the file, the line and the fix."""


class TraceFileError(ValueError):
    """A trace output file written for other settings, or not written by :func:`generate_traces`."""


@dataclass(frozen=True)
class Problem:
    """One question to reason about.

    Attributes:
        question: the problem text.
        reference: the final number (normalised, see :func:`normalise_number`); None if unknown.
        source: where it was read (``"FILE line N"`` or ``"DATASET (CONFIG, SPLIT) row N"``).
    """

    question: str
    reference: str | None = None
    source: str = ""


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


# --- numbers and answers -------------------------------------------------------------------


def normalise_number(text: str) -> str | None:
    """``text`` as a plain decimal (no commas, no trailing zeros), or None if it is not a number."""
    cleaned = text.strip().lstrip("$").replace(",", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    return format(value.normalize(), "f") if value.is_finite() else None


def parse_reference(answer: str) -> str | None:
    """The final number of a GSM8K answer (the text after its last ``####``; the whole text if none)."""
    return normalise_number(answer.rpartition("####")[2])


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{...}`` in ``text`` (nested braces allowed)."""
    start = text.rfind(BOXED)
    while start >= 0:
        depth, begin = 1, start + len(BOXED)
        for position in range(begin, len(text)):
            depth += {"{": 1, "}": -1}.get(text[position], 0)
            if depth == 0:
                return text[begin:position]
        start = text.rfind(BOXED, 0, start)  # unclosed (cut off): try an earlier box
    return None


def extract_answer(response: str) -> str | None:
    """The last number in the last ``\\boxed{}`` of ``response``, else its last number (normalised)."""
    boxed = last_boxed(response)
    numbers = NUMBER.findall(response if boxed is None else boxed)
    return normalise_number(numbers[-1]) if numbers else None


def answers_match(predicted: str | None, reference: str | None) -> bool | None:
    """Whether two normalised numbers are equal; None without a reference."""
    if reference is None:
        return None
    return predicted is not None and Decimal(predicted) == Decimal(reference)


# --- problems ------------------------------------------------------------------------------


def load_problems(source: str | Path, *, config: str = "main", split: str = "test",
                  limit: int | None = None) -> list[Problem]:
    """Problems from a JSON-lines file, or from a hub data set id such as ``openai/gsm8k``.

    ``source`` is a file when it exists, ends in ``.jsonl``/``.json``, or does not look like
    ``owner/name``; otherwise it is a data set id loaded with ``datasets`` (``config``, ``split``).

    Raises:
        TraceInputError: a bad file (see :func:`read_problems`), or a data set the hub cannot give.
    """
    path = Path(source)
    is_hub_id = re.fullmatch(r"[\w.-]+/[\w.-]+", str(source)) is not None
    if path.exists() or path.suffix in (".jsonl", ".json") or not is_hub_id:
        problems = read_problems(path)
    else:
        problems = problems_from_hub(str(source), config=config, split=split)
    return problems[:limit]


def read_problems(path: str | Path) -> list[Problem]:
    """Problems of a JSON-lines file of ``{"question": ..., "answer": "... #### 42"}`` records.

    Blank lines are skipped; ``answer`` may be left out (no reference).

    Raises:
        TraceInputError: naming the file, the line and the fix, for a missing or unreadable
            file, a line that is not a JSON object, a record without a question, an answer
            without a final number, or a file without records.
    """
    path = Path(path)
    problems = [_problem(f"{path} line {number}", record) for number, record in _json_lines(path, PROBLEM_EXAMPLE)]
    if not problems:
        raise TraceInputError(f"problem file {path} holds no problems; add one JSON object per line, "
                              f"such as {PROBLEM_EXAMPLE}")
    return problems


def problems_from_hub(dataset: str = GSM8K_HUB, *, config: str = "main", split: str = "test") -> list[Problem]:
    """Problems of a hub data set with ``question``/``answer`` columns (GSM8K's layout).

    Fails within seconds when no hub answers (unless ``HF_HUB_OFFLINE`` or
    ``HF_DATASETS_OFFLINE`` asks for the local cache).

    Raises:
        TraceInputError: no hub, no ``datasets`` package, or the hub has no such data set.
    """
    fix = "pass a JSON-lines file such as ../shared/data/gsm8k/test.jsonl instead"
    if not hub_offline("HF_DATASETS_OFFLINE") and not hub_reachable():
        raise TraceInputError(f"{dataset!r} is not a file, and the hub at {hub_host()} does not answer to load it "
                              f"as a data set; {fix}")
    try:
        import datasets
    except ImportError as err:
        raise TraceInputError(f"loading {dataset!r} from the hub needs the datasets package "
                              f"(pip install datasets); or {fix}") from err
    try:
        rows = datasets.load_dataset(dataset, config, split=split)
    except (ValueError, OSError, ConnectionError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TraceInputError(f"cannot load {dataset!r} (config {config!r}, split {split!r}) from the hub "
                              f"({reason}); {fix}") from err
    return [_problem(f"{dataset} ({config}, {split}) row {number}", dict(row)) for number, row in enumerate(rows)]


def problems_digest(problems: Sequence[Problem]) -> str:
    """A SHA-256 of the questions and references, in order (sources are left out)."""
    text = json.dumps([[p.question, p.reference] for p in problems], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _problem(location: str, record: dict) -> Problem:
    """The problem of one record; ``location`` (``"FILE line N"``) names it in errors and as its source."""
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise TraceInputError(f"{location}: no question (a record needs a non-empty string \"question\"); "
                              f"write it as {PROBLEM_EXAMPLE}")
    answer = _answer_text(record.get("answer"))
    reference = parse_reference(answer) if answer is not None else None
    if answer is not None and reference is None:
        raise TraceInputError(f"{location}: the answer has no final number after '####' ({answer[-40:]!r}); "
                              "end it with '#### 42', or leave \"answer\" out")
    return Problem(question, reference, location)


def _answer_text(value) -> str | None:
    """An answer field as text: strings as they are, JSON numbers written out, None if absent."""
    if value is None or isinstance(value, str):
        return value
    return "" if isinstance(value, bool) else str(value)  # "" has no number: refused with the line


def _json_lines(path: Path, example: str) -> Iterator[tuple[int, dict]]:
    """``(line number, record)`` for each non-blank line of ``path``; any problem names file and line."""
    if not path.is_file():
        state = "is a folder" if path.is_dir() else "does not exist"
        raise TraceInputError(f"{path} {state}; pass a JSON-lines file with one record per line, such as {example}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TraceInputError(f"cannot read {path} ({err}); pass a UTF-8 JSON-lines file") from err
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            record, reason = None, f"not JSON ({err.msg})"
        else:
            reason = f"a JSON {type(record).__name__}, not an object"
        if not isinstance(record, dict):
            raise TraceInputError(f"{path} line {number} is {reason}; write one JSON object per line, "
                                  f"such as {example}")
        yield number, record


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
        TraceFileError: the file is missing or is not a trace file.
    """
    path = Path(path)
    try:
        records = check_cache_file(path)
    except CacheCorrupt as err:
        raise TraceFileError(f"{path} is not a trace file written by generate_traces; {TRACE_FILE_FIX}") from err
    if not records or records[0].get("settings", {}).get("format") != FORMAT:
        raise TraceFileError(f"{path} is missing or not a trace file ({FORMAT}); write it with generate_traces")
    return sorted((Trace.from_record(r) for r in records[1:]), key=lambda t: t.index)


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
              for index, (number, record) in enumerate(_json_lines(path, TEXT_TRACE_EXAMPLE))]
    if not traces:
        raise TraceInputError(f"trace file {path} holds no traces; add one JSON object per line, "
                              f"such as {TEXT_TRACE_EXAMPLE}")
    return traces


def _text_trace(path: Path, number: int, record: dict, tokenizer, index: int) -> Trace:
    prompt, response, answer = record.get("prompt"), record.get("response"), _answer_text(record.get("answer"))
    if not isinstance(prompt, str) or not prompt or not isinstance(response, str):
        raise TraceInputError(f"{path} line {number}: a trace needs a non-empty string \"prompt\" and a string "
                              f"\"response\"; write it as {TEXT_TRACE_EXAMPLE}")
    if answer is not None and parse_reference(answer) is None:
        raise TraceInputError(f"{path} line {number}: \"answer\" has no final number ({answer[-40:]!r}); "
                              "write it as \"42\" or \"... #### 42\", or leave it out")
    return traces_from_text(tokenizer, prompt, response, answer, index)
