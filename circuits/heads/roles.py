"""Named token positions of a prompt set (IOI's IO, S1, S2, END), found in each prompt's tokens.

Context:
    Averaging a head's attention over many prompts needs the *same* position in each prompt;
    prompts of a task differ in length and word order, so "position 5" means nothing across
    them. Tasks name their positions instead: in IOI (Wang et al. 2022) ``IO`` is the indirect
    object's name, ``S1`` and ``S2`` the subject's first and second mentions, ``END`` the last
    token, where the answer is predicted.

    A role here is a word and which occurrence of it (:class:`RoleText`), or the end of the
    prompt. :func:`find_roles` locates each in a prompt's token strings (as a capture records
    them: their concatenation is the prompt's text, maybe after special tokens such as a BOS).
    The word is matched as a whole word, without its leading space (a name opening the prompt
    has none), and its position is the word's **last token**: the first position whose state
    has read the whole word (a name of several tokens is read at its end).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from probe.errors import InputError

END = "END"
IOI_ROLES = ("IO", "S1", "S2", END)


@dataclass(frozen=True)
class RoleText:
    """The ``occurrence``-th (1 = first) whole-word occurrence of ``text`` in a prompt."""

    text: str
    occurrence: int = 1

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise InputError("a role's text is empty; give the word it names, e.g. 'Mary'")
        if isinstance(self.occurrence, bool) or not isinstance(self.occurrence, int) or self.occurrence < 1:
            raise InputError(f"a role's occurrence counts from 1, got {self.occurrence!r}")


RoleSpec = Mapping[str, "RoleText | None"]
"""Role name -> where it is; ``None`` means the prompt's last token (``END``)."""


def ioi_role_spec(answer: str, subject: str) -> dict[str, RoleText | None]:
    """IOI's roles from an item's answer (the indirect object) and subject."""
    return {"IO": RoleText(answer), "S1": RoleText(subject, 1), "S2": RoleText(subject, 2), END: None}


def find_roles(tokens: list[str], spec: RoleSpec) -> dict[str, int]:
    """Each role's token position (0 = the first token) in ``tokens``.

    Raises:
        InputError: a word that does not occur often enough (the message names role and prompt).
    """
    text = "".join(tokens)
    ends, total = [], 0
    for token in tokens:
        total += len(token)
        ends.append(total)  # one past each token's last character
    found = {}
    for role, where in spec.items():
        if where is None:
            found[role] = len(tokens) - 1
            continue
        word = where.text.strip()
        matches = [m for m in re.finditer(rf"(?<!\w){re.escape(word)}(?!\w)", text)]
        if len(matches) < where.occurrence:
            raise InputError(f"role {role}: {word!r} occurs {len(matches)} time(s) in {text!r}, "
                             f"not {where.occurrence}; the prompt and its roles do not belong together")
        last_char = matches[where.occurrence - 1].end() - 1
        found[role] = next(i for i, end in enumerate(ends) if end > last_char)
    return found
