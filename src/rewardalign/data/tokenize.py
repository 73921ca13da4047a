"""Tokenisation of groups: prompt ids once, then the ids of each response as the model must produce them.

Plain text: ``prompt`` then ``response`` then EOS. Conversational data (message lists): the prompt is
rendered by the tokenizer's chat template with the generation prompt, the response as the assistant turn.

The response ids are the tokens the model is trained to produce AFTER the prompt ids it sees at generation
time. Tokenising ``prompt + response`` in one go can merge tokens across the boundary (``"x: " + "7"`` ->
``"x:" + " 7"``), so the prompt ids are not always a prefix of the joint ids; the response is then
tokenised on its own and appended to the prompt ids, and the group counts as a boundary fix in the stats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .schema import DataError, DropReport, Group, Text


@dataclass
class TokenizeConfig:
    """How groups become token ids.

    max_length: longest prompt + response sequence; max_prompt_length: longest prompt (default: half of
    max_length). truncation: ``truncate`` keeps the prompt's end and each response's start; ``drop`` drops the
    group (counted, never silent). chat_template: ``auto`` uses the template for message lists only,
    ``always`` wraps plain strings as a user / assistant turn, ``never`` joins message contents as plain text.
    """

    max_length: int = 512
    max_prompt_length: int | None = None
    truncation: Literal["truncate", "drop"] = "truncate"
    chat_template: Literal["auto", "always", "never"] = "auto"
    add_eos: bool = True

    @classmethod
    def of(cls, fields: Any) -> TokenizeConfig:
        """The settings of a run config (anything with max_length, max_prompt_length, truncation and
        chat_template attributes)."""
        return cls(max_length=fields.max_length, max_prompt_length=fields.max_prompt_length,
                   truncation=fields.truncation, chat_template=fields.chat_template)

    def __post_init__(self) -> None:
        if self.truncation not in ("truncate", "drop"):
            raise ValueError(f"truncation must be 'truncate' or 'drop', got {self.truncation!r}")
        if self.chat_template not in ("auto", "always", "never"):
            raise ValueError(f"chat_template must be 'auto', 'always' or 'never', got {self.chat_template!r}")
        if self.max_prompt_length is None:
            self.max_prompt_length = self.max_length // 2
        if not 0 < self.max_prompt_length < self.max_length:
            raise ValueError(
                f"max_prompt_length ({self.max_prompt_length}) must be in (0, max_length={self.max_length})"
            )


@dataclass
class TokenizedGroup:
    """A group as token ids, with its explicit feedback carried along. ``index`` is the source group's."""

    prompt_ids: list[int]
    response_ids: list[list[int]]
    rewards: list[float] | None = None
    scores: list[float] | None = None
    labels: list[int] | None = None
    reward_members: list[list[float]] | None = None
    index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    """Per-group precomputed values (e.g. ``ref_logps`` [K], ``prompt_ref_logps``) added by later stages."""

    @property
    def k(self) -> int:
        return len(self.response_ids)

    @property
    def length(self) -> int:
        """Tokens of the longest prompt + response sequence of the group (for length-grouped batches)."""
        return len(self.prompt_ids) + max(len(r) for r in self.response_ids)

    @property
    def n_tokens(self) -> int:
        """All tokens of the group in the plain layout (the prompt repeated once per response)."""
        return sum(len(self.prompt_ids) + len(r) for r in self.response_ids)


@dataclass
class TokenizeStats:
    """What tokenisation changed: counted for the run's summary."""

    groups: int = 0
    truncated_prompts: int = 0
    truncated_responses: int = 0
    dropped: int = 0
    boundary_fixes: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _messages(text: Text, role: str) -> list[dict[str, Any]]:
    return [{"role": role, "content": text}] if isinstance(text, str) else list(text)


def _plain(text: Text) -> str:
    return text if isinstance(text, str) else "\n".join(str(m["content"]) for m in text)


def render(tokenizer: Any, prompt: Text, response: Text | None, mode: str) -> tuple[str, str | None, bool]:
    """Render prompt (and response) as text. Returns (prompt_text, response_text, used_chat_template).

    With the chat template, the response text is the rendered conversation minus the rendered prompt
    (with its generation prompt): the assistant turn exactly as the template closes it.
    """
    chat = mode == "always" or (mode == "auto" and not isinstance(prompt, str))
    if not chat:
        return _plain(prompt), None if response is None else _plain(response), False
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("conversational data needs a tokenizer with a chat template (or chat_template: never)")
    prompt_msgs = _messages(prompt, "user")
    prompt_text = tokenizer.apply_chat_template(prompt_msgs, tokenize=False, add_generation_prompt=True)
    if response is None:
        return prompt_text, None, True
    full = tokenizer.apply_chat_template(prompt_msgs + _messages(response, "assistant"), tokenize=False)
    if not full.startswith(prompt_text):
        raise ValueError(
            "the chat template does not render the prompt with its generation prompt as a prefix of the "
            "conversation; cannot tell the response tokens apart"
        )
    return prompt_text, full[len(prompt_text):], True


def response_token_ids(tokenizer: Any, prompt_ids: list[int], prompt_text: str, response_text: str,
                       add_special_tokens: bool) -> tuple[list[int], bool]:
    """Ids of ``response_text`` as produced after ``prompt_ids``; True in second place when the joint
    tokenisation merged across the boundary and the response had to be tokenised on its own."""
    joint = tokenizer(prompt_text + response_text, add_special_tokens=add_special_tokens)["input_ids"]
    if joint[: len(prompt_ids)] == prompt_ids:
        return joint[len(prompt_ids):], False
    return tokenizer(response_text, add_special_tokens=False)["input_ids"], True


def tokenize_group(
    group: Group, tokenizer: Any, config: TokenizeConfig, index: int, stats: TokenizeStats | None = None
) -> TokenizedGroup | None:
    """Tokenise one group; None when ``truncation: drop`` drops it (the caller records why)."""
    stats = stats if stats is not None else TokenizeStats()
    prompt_text, _, chat = render(tokenizer, group.prompt, None, config.chat_template)
    # A chat template writes its own special tokens (BOS); plain text gets the tokenizer's defaults.
    add_special = not chat
    prompt_ids = tokenizer(prompt_text, add_special_tokens=add_special)["input_ids"]
    responses = []
    for k, response in enumerate(group.responses):
        _, response_text, _ = render(tokenizer, group.prompt, response, config.chat_template)
        ids, fixed = response_token_ids(tokenizer, prompt_ids, prompt_text, response_text, add_special)
        stats.boundary_fixes += fixed
        eos = tokenizer.eos_token_id
        if eos is not None and eos in ids:
            # A template may write text after the closing EOS (a newline); generation stops at EOS.
            ids = ids[: len(ids) - ids[::-1].index(eos)]
        elif config.add_eos and eos is not None:
            ids = ids + [eos]
        if not ids:
            raise DataError(index, f"responses[{k}]", "tokenises to no tokens")
        responses.append(ids)

    stats.groups += 1
    longest = max(len(r) for r in responses)
    if len(prompt_ids) + longest > config.max_length or len(prompt_ids) > config.max_prompt_length:
        if config.truncation == "drop":
            stats.dropped += 1
            return None
        if len(prompt_ids) > config.max_prompt_length:
            prompt_ids = prompt_ids[-config.max_prompt_length:]
            stats.truncated_prompts += 1
        budget = config.max_length - len(prompt_ids)
        if longest > budget:
            responses = [r[:budget] for r in responses]
            stats.truncated_responses += 1
    return TokenizedGroup(
        prompt_ids=prompt_ids,
        response_ids=responses,
        rewards=group.rewards,
        scores=group.scores,
        labels=group.labels,
        reward_members=group.reward_members,
        index=index,
    )


def tokenize_groups(
    groups: list[Group], tokenizer: Any, config: TokenizeConfig, drops: DropReport | None = None
) -> tuple[list[TokenizedGroup], TokenizeStats]:
    """Tokenise every group; dropped groups are recorded in ``drops`` with their reason."""
    stats = TokenizeStats()
    out = []
    for i, group in enumerate(groups):
        tokenized = tokenize_group(group, tokenizer, config, i, stats)
        if tokenized is None:
            if drops is not None:
                drops.add(i, f"too long: longer than max_length={config.max_length} "
                             f"or max_prompt_length={config.max_prompt_length} tokens")
            continue
        out.append(tokenized)
    return out, stats
