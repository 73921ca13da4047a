import pytest

from rewardalign.data.schema import DropReport, Group
from rewardalign.data.tokenize import TokenizeConfig, TokenizeStats, tokenize_group, tokenize_groups


def test_plain_text_prompt_then_response_then_eos(tokenizer):
    g = Group("hello world", [" the answer is yes"])
    tg = tokenize_group(g, tokenizer, TokenizeConfig(max_length=64), 0)
    assert tg.prompt_ids == tokenizer("hello world")["input_ids"]
    assert tg.response_ids[0][-1] == tokenizer.eos_token_id
    assert tokenizer.decode(tg.prompt_ids + tg.response_ids[0][:-1]) == "hello world the answer is yes"


def test_boundary_merge_response_tokens_are_what_follows_the_prompt(tokenizer):
    """'Answer: ' + '7': byte-level BPE merges the space with the digit ('Ġ7'), so tokenising the prompt alone
    ends with a bare 'Ġ' that is not a prefix of the joint tokenisation. The response ids must then be the
    tokens the model produces after the prompt ids it is given at generation time."""
    prompt, response = "Answer: ", "7"
    prompt_ids = tokenizer(prompt)["input_ids"]
    joint = tokenizer(prompt + response)["input_ids"]
    assert joint[: len(prompt_ids)] != prompt_ids, "the fixture must exercise a merge across the boundary"
    stats = TokenizeStats()
    tg = tokenize_group(Group(prompt, [response]), tokenizer, TokenizeConfig(max_length=64), 0, stats)
    assert tg.prompt_ids == prompt_ids
    assert tokenizer.decode(tg.prompt_ids + tg.response_ids[0][:-1]) == prompt + response
    assert tg.response_ids[0][:-1] == tokenizer(response, add_special_tokens=False)["input_ids"]
    assert stats.boundary_fixes == 1


def test_no_boundary_fix_when_prefix_holds(tokenizer):
    stats = TokenizeStats()
    tokenize_group(Group("hello world", [" yes"]), tokenizer, TokenizeConfig(max_length=64), 0, stats)
    assert stats.boundary_fixes == 0


def test_chat_template_prompt_has_generation_prompt_and_response_is_assistant_turn(tokenizer):
    g = Group([{"role": "user", "content": "what is the answer?"}],
              ["yes", [{"role": "assistant", "content": "no"}]])
    tg = tokenize_group(g, tokenizer, TokenizeConfig(max_length=64), 0)
    prompt_text = tokenizer.decode(tg.prompt_ids)
    assert prompt_text.endswith("<|assistant|>\n")
    expected = tokenizer.apply_chat_template(
        [{"role": "user", "content": "what is the answer?"}, {"role": "assistant", "content": "yes"}], tokenize=False
    )
    # the trained tokens stop at EOS: the template's newline after it is not trained
    assert tokenizer.decode(tg.prompt_ids + tg.response_ids[0]) == expected.rstrip("\n")
    assert tg.response_ids[0][-1] == tokenizer.eos_token_id
    assert tokenizer.decode(tg.response_ids[1]) == "no</s>"


def test_chat_template_always_wraps_plain_strings(tokenizer):
    tg = tokenize_group(Group("hi", ["yo"]), tokenizer, TokenizeConfig(max_length=64, chat_template="always"), 0)
    assert tokenizer.decode(tg.prompt_ids) == "<|user|>\nhi\n<|assistant|>\n"


def test_truncation_keeps_prompt_end_and_response_start(tokenizer):
    long_prompt = "the quick brown fox jumps over the lazy dog " * 4
    long_response = " hello world the answer is yes" * 4
    g = Group(long_prompt, [long_response, " no"])
    full_prompt = tokenizer(long_prompt)["input_ids"]
    full_response = tokenizer(long_prompt + long_response)["input_ids"][len(full_prompt):]
    cfg = TokenizeConfig(max_length=20, max_prompt_length=8)
    stats = TokenizeStats()
    tg = tokenize_group(g, tokenizer, cfg, 0, stats)
    assert tg.prompt_ids == full_prompt[-8:]
    assert tg.response_ids[0] == full_response[:12]
    assert len(tg.prompt_ids) + max(len(r) for r in tg.response_ids) <= 20
    assert stats.truncated_prompts == 1 and stats.truncated_responses == 1


def test_truncation_drop_counts_and_reports(tokenizer):
    groups = [Group("hi", [" yes"]), Group("the quick brown fox " * 10, [" no"])]
    drops = DropReport()
    out, stats = tokenize_groups(groups, tokenizer, TokenizeConfig(max_length=16, truncation="drop"), drops)
    assert [g.index for g in out] == [0]
    assert stats.dropped == 1 and len(drops) == 1
    assert drops.rows[0][0] == 1 and "too long" in drops.rows[0][1]


def test_bad_tokenize_options():
    with pytest.raises(ValueError, match="truncation"):
        TokenizeConfig(truncation="cut")
    with pytest.raises(ValueError, match="max_prompt_length"):
        TokenizeConfig(max_length=8, max_prompt_length=8)
