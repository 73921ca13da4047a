"""Tokenisation of groups: prompt ids once, then the ids of each response as the model must produce them.

Plain text: ``prompt`` then ``response`` then EOS. Conversational data (message lists): the prompt is
rendered by the tokenizer's chat template with the generation prompt, the response as the assistant turn.

The response ids are the tokens the model is trained to produce AFTER the prompt ids it sees at generation
time. Tokenising ``prompt + response`` in one go can merge tokens across the boundary (``"x: " + "7"`` ->
``"x:" + " 7"``), so the prompt ids are not always a prefix of the joint ids; the response is then
tokenised on its own and appended to the prompt ids, and the group counts as a boundary fix in the stats.

:func:`tokenize_group` applies that rule to one group; :func:`tokenize_batch` (and :func:`tokenize_groups`,
built on it) gives the same ids for many groups with a few batched calls of the fast tokenizer: prompts and
responses are tokenised on their own, and the joint text is tokenised only where it can differ from the two
side by side. For a byte-level BPE (no normaliser, regex pre-tokenisation, no stripping added tokens) that is
decided on a short window around the boundary (the prompt's last pre-tokens and the response's first ones):
when the window tokenises to exactly the prompt's tail then the response's head, word for word, the joint
ids are the prompt ids then the response ids. Any other row, and every row of another kind of tokenizer, is
tokenised jointly as :func:`tokenize_group` does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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

    def add(self, row: TokenizedRow) -> None:
        """Count one tokenised group (its boundary fixes are counted by the caller)."""
        self.groups += 1
        self.dropped += row.dropped
        self.truncated_prompts += row.truncated_prompt
        self.truncated_responses += row.truncated_response


def _messages(text: Text, role: str) -> list[dict[str, Any]]:
    return [{"role": role, "content": text}] if isinstance(text, str) else list(text)


def _plain(text: Text) -> str:
    return text if isinstance(text, str) else "\n".join(str(m["content"]) for m in text)


def uses_chat(prompt: Text, mode: str) -> bool:
    """Whether a group with ``prompt`` is rendered by the chat template under ``chat_template: mode``."""
    return mode == "always" or (mode == "auto" and not isinstance(prompt, str))


def _chat_prompt(tokenizer: Any, prompt: Text) -> tuple[list[dict[str, Any]], str]:
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("conversational data needs a tokenizer with a chat template (or chat_template: never)")
    prompt_msgs = _messages(prompt, "user")
    return prompt_msgs, tokenizer.apply_chat_template(prompt_msgs, tokenize=False, add_generation_prompt=True)


def _chat_response(tokenizer: Any, prompt_msgs: list[dict[str, Any]], prompt_text: str, response: Text) -> str:
    full = tokenizer.apply_chat_template(prompt_msgs + _messages(response, "assistant"), tokenize=False)
    if not full.startswith(prompt_text):
        raise ValueError(
            "the chat template does not render the prompt with its generation prompt as a prefix of the "
            "conversation; cannot tell the response tokens apart"
        )
    return full[len(prompt_text):]


def render(tokenizer: Any, prompt: Text, response: Text | None, mode: str) -> tuple[str, str | None, bool]:
    """Render prompt (and response) as text. Returns (prompt_text, response_text, used_chat_template).

    With the chat template, the response text is the rendered conversation minus the rendered prompt
    (with its generation prompt): the assistant turn exactly as the template closes it.
    """
    if not uses_chat(prompt, mode):
        return _plain(prompt), None if response is None else _plain(response), False
    prompt_msgs, prompt_text = _chat_prompt(tokenizer, prompt)
    if response is None:
        return prompt_text, None, True
    return prompt_text, _chat_response(tokenizer, prompt_msgs, prompt_text, response), True


def render_group(tokenizer: Any, prompt: Text, responses: Sequence[Text], mode: str) -> tuple[str, list[str], bool]:
    """:func:`render` of a whole group, the prompt rendered once: (prompt_text, response_texts, chat)."""
    if not uses_chat(prompt, mode):
        return _plain(prompt), [_plain(r) for r in responses], False
    prompt_msgs, prompt_text = _chat_prompt(tokenizer, prompt)
    return prompt_text, [_chat_response(tokenizer, prompt_msgs, prompt_text, r) for r in responses], True


def response_token_ids(tokenizer: Any, prompt_ids: list[int], prompt_text: str, response_text: str,
                       add_special_tokens: bool) -> tuple[list[int], bool]:
    """Ids of ``response_text`` as produced after ``prompt_ids``; True in second place when the joint
    tokenisation merged across the boundary and the response had to be tokenised on its own."""
    joint = tokenizer(prompt_text + response_text, add_special_tokens=add_special_tokens)["input_ids"]
    if joint[: len(prompt_ids)] == prompt_ids:
        return joint[len(prompt_ids):], False
    return tokenizer(response_text, add_special_tokens=False)["input_ids"], True


def _close_response(ids: list[int], eos: int | None, add_eos: bool) -> list[int]:
    if eos is not None and eos in ids:
        # A template may write text after the closing EOS (a newline); generation stops at EOS.
        return ids[: len(ids) - ids[::-1].index(eos)]
    if add_eos and eos is not None:
        return ids + [eos]
    return ids


def _fit(prompt_ids: list[int], responses: list[list[int]], config: TokenizeConfig
         ) -> tuple[list[int], list[list[int]], bool, bool, bool]:
    """Apply max_length / max_prompt_length: (prompt_ids, responses, truncated_prompt, truncated_response,
    dropped)."""
    longest = max(len(r) for r in responses)
    if len(prompt_ids) + longest <= config.max_length and len(prompt_ids) <= config.max_prompt_length:
        return prompt_ids, responses, False, False, False
    if config.truncation == "drop":
        return prompt_ids, responses, False, False, True
    cut_prompt = cut_responses = False
    if len(prompt_ids) > config.max_prompt_length:
        prompt_ids = prompt_ids[-config.max_prompt_length:]
        cut_prompt = True
    budget = config.max_length - len(prompt_ids)
    if longest > budget:
        responses = [r[:budget] for r in responses]
        cut_responses = True
    return prompt_ids, responses, cut_prompt, cut_responses, False


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
        ids = _close_response(ids, tokenizer.eos_token_id, config.add_eos)
        if not ids:
            raise DataError(index, f"responses[{k}]", "tokenises to no tokens")
        responses.append(ids)

    stats.groups += 1
    prompt_ids, responses, cut_prompt, cut_responses, dropped = _fit(prompt_ids, responses, config)
    if dropped:
        stats.dropped += 1
        return None
    stats.truncated_prompts += cut_prompt
    stats.truncated_responses += cut_responses
    return TokenizedGroup(
        prompt_ids=prompt_ids,
        response_ids=responses,
        rewards=group.rewards,
        scores=group.scores,
        labels=group.labels,
        reward_members=group.reward_members,
        index=index,
    )


# ----------------------------------------------------------------------------------------------- batched


@dataclass
class TokenizedRow:
    """One group as :func:`tokenize_batch` leaves it: its ids (after EOS and truncation) and what happened."""

    prompt_ids: list[int]
    response_ids: list[list[int]]
    boundary_fixes: int = 0
    truncated_prompt: bool = False
    truncated_response: bool = False
    dropped: bool = False
    error: tuple[str, str] | None = None
    """(field, reason) of the group's DataError (a response that tokenises to no tokens)."""


WINDOW_PRETOKENS = 2
"""Pre-tokens on each side of the boundary in the window check (see the module docstring)."""
_WINDOW_TOKENS = 64  # a window reaching further back or forward is not worth it: tokenise the joint text


def _byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's byte -> printable character map (what byte-level BPE vocabularies are made of)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


@dataclass
class _Window:
    """What the window check needs of a tokenizer: each id's bytes and the ids special tokens put in front."""

    id_bytes: list[bytes]
    prefix: int


def _window_support(tokenizer: Any) -> _Window | None:
    """The window check's tables for ``tokenizer``, or None when its tokenisation is not known to be local:
    anything but a byte-level BPE with regex / byte-level pre-tokenisation, no normaliser, no added token that
    strips its neighbours' whitespace, and special tokens added in front only."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    spec = json.loads(backend.to_str())
    pre = spec.get("pre_tokenizer")
    parts = pre.get("pretokenizers", []) if pre and pre.get("type") == "Sequence" else [pre]
    kinds = [(p or {}).get("type") for p in parts]
    if spec.get("normalizer") is not None or "ByteLevel" not in kinds:
        return None
    for part, kind in zip(parts, kinds):
        if kind == "ByteLevel" and part.get("add_prefix_space"):
            return None
        if kind == "Split" and (part.get("behavior") != "Isolated" or part.get("invert")):
            return None
        if kind not in ("ByteLevel", "Split"):
            return None
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("dropout"):
        return None
    if any(t.get("lstrip") or t.get("rstrip") or t.get("single_word") for t in spec.get("added_tokens", [])):
        return None
    empty = tokenizer("", add_special_tokens=True)["input_ids"]
    for probe in ("a b", "Hello world.\n\nx 12"):
        if tokenizer(probe)["input_ids"] != empty + tokenizer(probe, add_special_tokens=False)["input_ids"]:
            return None
    decoder = _byte_decoder()
    vocab = backend.get_vocab(with_added_tokens=False)
    added = backend.get_added_tokens_decoder()
    table = [b""] * (max([*vocab.values(), *added, -1]) + 1)
    for token, i in vocab.items():
        try:
            table[i] = bytes(decoder[c] for c in token)
        except KeyError:
            return None
    for i, token in added.items():
        table[i] = token.content.encode()
    return _Window(table, len(empty))


def _window_for(tokenizer: Any) -> _Window | None:
    key = (id(tokenizer), len(tokenizer), getattr(tokenizer, "eos_token_id", None))
    cached = getattr(tokenizer, "_rewardalign_window", None)
    if cached is None or cached[0] != key:
        cached = (key, _window_support(tokenizer))
        try:
            tokenizer._rewardalign_window = cached
        except AttributeError:
            pass
    return cached[1]


def _text(window: _Window, ids: list[int]) -> str | None:
    try:
        return b"".join(window.id_bytes[i] for i in ids).decode("utf-8")
    except (UnicodeDecodeError, IndexError):
        return None


def _words(encoding: Any, ids: list[int], window: _Window, start: int, stop: int, step: int
           ) -> tuple[int, list[int]] | None:
    """Walk whole pre-tokens from ``start`` towards ``stop`` (step -1: backwards) until WINDOW_PRETOKENS of them
    are taken and the outermost holds a non-whitespace character. Returns (the token index where the walk
    ended, the word ids of the tokens taken in text order); None when it ran into ``stop``."""
    taken: list[int] = []
    i = start
    pieces = 0
    while True:
        if len(taken) > _WINDOW_TOKENS:
            return None
        if i == stop:
            return None
        word = encoding.token_to_word(i if step > 0 else i - 1)
        if word is None:
            return None
        j = i
        while j != stop and encoding.token_to_word(j if step > 0 else j - 1) == word:
            j += step
        piece = ids[i:j] if step > 0 else ids[j:i]
        taken.extend([word] * len(piece))
        pieces += 1
        i = j
        if pieces >= WINDOW_PRETOKENS:
            text = _text(window, piece)
            if text is None:
                return None
            if text.strip():
                return i, taken if step > 0 else taken[::-1]


def _pieces(ids: list[int], words: list[Any]) -> list[list[int]]:
    """Token ids grouped by pre-token (word id)."""
    out: list[list[int]] = []
    previous = object()
    for i, w in zip(ids, words):
        if w != previous or not out:
            out.append([])
            previous = w
        out[-1].append(i)
    return out


def _encode(tokenizer: Any, texts: list[str], add_special: bool) -> tuple[list[list[int]], list[Any] | None]:
    if not texts:
        return [], []
    enc = tokenizer(texts, add_special_tokens=add_special, return_attention_mask=False,
                    return_token_type_ids=False)
    return enc["input_ids"], getattr(enc, "encodings", None)


def _response_ids(tokenizer: Any, prompt_texts: list[str], response_texts: list[list[str]], add_special: bool
                  ) -> tuple[list[list[int]], list[list[list[int]]], list[list[bool]]]:
    """Prompt ids and each response's ids by the boundary rule of :func:`response_token_ids`, batched."""
    prompt_ids, prompt_enc = _encode(tokenizer, prompt_texts, add_special)
    flat = [(g, k) for g, texts in enumerate(response_texts) for k in range(len(texts))]
    texts = [response_texts[g][k] for g, k in flat]
    alone, alone_enc = _encode(tokenizer, texts, False)
    ids: list[list[int] | None] = [None] * len(flat)
    fixed = [False] * len(flat)
    joint_needed = list(range(len(flat)))
    window = _window_for(tokenizer) if prompt_enc and alone_enc else None
    if window is not None:
        joint_needed = []
        tails: dict[int, tuple[int, list[int], str] | None] = {}
        checks, windows = [], []
        for j, (g, _) in enumerate(flat):
            if g not in tails:
                lo = window.prefix if add_special else 0
                walk = _words(prompt_enc[g], prompt_ids[g], window, len(prompt_ids[g]), lo, -1)
                tail = None
                if walk is not None:
                    text = _text(window, prompt_ids[g][walk[0]:])
                    if text is not None and prompt_texts[g].endswith(text):
                        tail = (walk[0], walk[1], text)
                tails[g] = tail
            tail = tails[g]
            head = _words(alone_enc[j], alone[j], window, 0, len(alone[j]), 1) if tail is not None else None
            head_text = None if head is None else _text(window, alone[j][: head[0]])
            if head_text is None or not texts[j].startswith(head_text):
                joint_needed.append(j)
                continue
            checks.append((j, tail, head))
            windows.append(tail[2] + head_text)
        window_ids, window_enc = _encode(tokenizer, windows, False)
        for (j, tail, head), got, enc in zip(checks, window_ids, window_enc):
            g = flat[j][0]
            tail_ids = prompt_ids[g][tail[0]:]
            expected_tail = _pieces(tail_ids, tail[1])
            expected_head = _pieces(alone[j][: head[0]], head[1])
            pieces = _pieces(got, enc.word_ids)
            if pieces == expected_tail + expected_head:
                ids[j] = alone[j]  # the joint ids are the prompt ids then the response ids
            elif pieces[0] == expected_tail[0] and pieces[-1] == expected_head[-1]:
                # The window changed at the boundary but agrees with both texts at its ends: the joint ids
                # are the prompt's ids before the window, the window's, then the response's after it.
                if got[: len(tail_ids)] == tail_ids:
                    ids[j] = got[len(tail_ids):] + alone[j][head[0]:]
                else:
                    ids[j], fixed[j] = alone[j], True
            else:
                joint_needed.append(j)
    joint, _ = _encode(tokenizer, [prompt_texts[flat[j][0]] + texts[j] for j in joint_needed], add_special)
    for j, ids_j in zip(joint_needed, joint):
        p = prompt_ids[flat[j][0]]
        if ids_j[: len(p)] == p:
            ids[j] = ids_j[len(p):]
        else:
            ids[j], fixed[j] = alone[j], True
    out_ids: list[list[list[int]]] = [[] for _ in response_texts]
    out_fixed: list[list[bool]] = [[] for _ in response_texts]
    for j, (g, _) in enumerate(flat):
        out_ids[g].append(ids[j])
        out_fixed[g].append(fixed[j])
    return prompt_ids, out_ids, out_fixed


def tokenize_batch(tokenizer: Any, config: TokenizeConfig, prompts: Sequence[Text],
                   responses: Sequence[Sequence[Text]]) -> list[TokenizedRow]:
    """Tokenise many groups with batched tokenizer calls: the same ids, truncation and drops as
    :func:`tokenize_group` on each. A group whose response tokenises to no tokens comes back with its
    ``error`` set (the caller raises it, naming the row)."""
    rendered = [render_group(tokenizer, p, rs, config.chat_template) for p, rs in zip(prompts, responses)]
    out: list[TokenizedRow | None] = [None] * len(rendered)
    eos = tokenizer.eos_token_id
    for chat in (False, True):
        rows = [i for i, r in enumerate(rendered) if r[2] == chat]
        if not rows:
            continue
        # A chat template writes its own special tokens (BOS); plain text gets the tokenizer's defaults.
        prompt_ids, response_ids, fixed = _response_ids(
            tokenizer, [rendered[i][0] for i in rows], [rendered[i][1] for i in rows], add_special=not chat)
        for n, i in enumerate(rows):
            closed = [_close_response(ids, eos, config.add_eos) for ids in response_ids[n]]
            fixes = sum(fixed[n])
            empty = next((k for k, ids in enumerate(closed) if not ids), None)
            if empty is not None:
                out[i] = TokenizedRow([], [], fixes, error=(f"responses[{empty}]", "tokenises to no tokens"))
                continue
            p, rs, cut_p, cut_r, dropped = _fit(prompt_ids[n], closed, config)
            out[i] = TokenizedRow(p, rs, fixes, cut_p, cut_r, dropped)
    return out  # type: ignore[return-value]


def tokenize_groups(
    groups: Sequence[Group], tokenizer: Any, config: TokenizeConfig, drops: DropReport | None = None,
    batch_size: int = 1000,
) -> tuple[list[TokenizedGroup], TokenizeStats]:
    """Tokenise every group (in batches of ``batch_size``, see :func:`tokenize_batch`); dropped groups are
    recorded in ``drops`` with their reason. For a large data set, :func:`rewardalign.data.pipeline.prepare_dataset`
    does the same on an Arrow data set, in several processes, cached on disk."""
    stats = TokenizeStats()
    out = []
    for start in range(0, len(groups), batch_size):
        chunk = groups[start: start + batch_size]
        rows = tokenize_batch(tokenizer, config, [g.prompt for g in chunk], [g.responses for g in chunk])
        for i, (group, row) in enumerate(zip(chunk, rows), start):
            stats.boundary_fixes += row.boundary_fixes
            if row.error is not None:
                raise DataError(i, *row.error)
            stats.add(row)
            if row.dropped:
                if drops is not None:
                    drops.add(i, too_long_reason(config))
                continue
            out.append(TokenizedGroup(
                prompt_ids=row.prompt_ids, response_ids=row.response_ids, rewards=group.rewards,
                scores=group.scores, labels=group.labels, reward_members=group.reward_members, index=i,
            ))
    return out, stats


def too_long_reason(config: TokenizeConfig) -> str:
    return (f"too long: longer than max_length={config.max_length} "
            f"or max_prompt_length={config.max_prompt_length} tokens")
