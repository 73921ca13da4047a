"""The run folder as the hub expects it: a model card (``README.md``) and ``push_to_hub``.

:func:`publish_run` is the last step of every ``run_*`` function (align, sft, train-rm, online): it writes the card
with huggingface_hub's ``ModelCard`` / ``ModelCardData`` (metadata: library_name, pipeline_tag, tags, base_model,
datasets) and a body like the cards TRL writes (base model, data, method with its paper, hyperparameters, final
metrics, how to load it), and, when the run's ``TrainingArguments`` ask for ``push_to_hub``, uploads the folder
(checkpoints left out) to ``hub_model_id`` (default: the folder's name) with ``huggingface_hub.HfApi``.
"""

from __future__ import annotations

import dataclasses
import re
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, ModelCard, ModelCardData

from .. import __version__
from ..objectives import get_objective
from ..runs import RunFolder, installed_name

PAPERS = {
    "000": "Direct Reward Distillation: A Point-wise Alignment Approach",
    "001": "Direct Reward Optimization: A Point-wise Alignment Approach",
    "002": "Simultaneous Reward Distillation and Preference Learning: Get You a Language Model Who Can Do Both",
    "003": "UNA: Unifying Alignments of RLHF/PPO, DPO and KTO by a Generalized Implicit Reward Function "
           "(Wang et al. 2024)",
    "004": "A Novel Soft Alignment Approach for Language Models with Explicit Listwise Rewards",
}
"""The papers the objectives' docstrings cite by number."""

METHODS = {
    "sft": "Supervised fine-tuning: the mean token negative log-likelihood of the demonstrations' response "
           "tokens (the prompt is context only).",
    "bt": "A Bradley-Terry reward model: -log sigmoid(r_w - r_l - margin) on preference pairs (plus "
          "center_coefficient * (r_w + r_l)^2), the reward being the score head's logit at the last non-padding "
          "token, from the base model's weights with a new score head.",
    "oracle": "The Oracle reward model of paper 002 (Eq. 5): (1 - a) * Bradley-Terry + a * NLL of the preferred "
              "response, the language-model head trained beside the score head (and left out of this "
              "sequence-classification model).",
    "likelihood": "A likelihood reward model: Bradley-Terry on r = beta / |y| * log pi(y|x) - offset, the causal "
                  "LM's own length-normalised log-likelihood of the response (SimPO's reference-free reward, Meng "
                  "et al. 2024), trained from the base model; saved as that causal LM.",
}

HYPERPARAMETERS = ("objective_args", "algorithm", "reference", "lora", "responses", "kind", "margin",
                   "center_coefficient", "reward", "transform", "n_samples", "temperature", "top_p", "max_new_tokens",
                   "label_threshold", "max_length", "max_prompt_length", "chat_template", "torch_dtype")
ENSEMBLE = ("members", "member_kind", "bootstrap")
TRAINING = ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
            "max_steps", "lr_scheduler_type", "warmup_steps", "warmup_ratio", "weight_decay", "optim", "bf16",
            "gradient_checkpointing")

TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

{{ what }} trained with rewardalign (`rewardalign {{ command }}`).

- **Base model:** {{ base_model }}
- **Data:** {{ data }}

## Method

{{ method }}
{% if papers %}
{% for number, title in papers %}- paper {{ number }}: *{{ title }}*
{% endfor %}{% endif %}
## Hyperparameters

| name | value |
| --- | --- |
{% for name, value in hyperparameters %}| {{ name }} | {{ value }} |
{% endfor %}
## Final metrics

| metric | value |
| --- | --- |
{% for name, value in metrics %}| {{ name }} | {{ value }} |
{% endfor %}
## Use

```python
{{ usage }}
```

## Framework versions

{% for name, version in versions %}- {{ name }}: {{ version }}
{% endfor %}"""


def hub_id(value: Any) -> str | None:
    """``value`` when it names a hub repository (``org/name``, not a local path), else None."""
    text = str(value or "")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", text) or text.startswith(".") or Path(text).exists():
        return None
    return text


def base_model_of(model: Any) -> str | None:
    """The hub id of a run's base model: itself, or the ``base_model`` of a local model's own card (the lineage of
    a run started from another run's output)."""
    if hub_id(model):
        return hub_id(model)
    card = Path(str(model or "")) / "README.md"
    if card.is_file() and card.read_text(encoding="utf-8").startswith("---"):  # a card with metadata
        base = ModelCard.load(card).data.base_model
        return hub_id(base[0] if isinstance(base, list) and base else base)
    return None


def describe_method(method: str) -> tuple[str, list[tuple[str, str]]]:
    """(a paragraph describing ``method``: an objective of the registry or sft / bt / oracle, the papers it
    cites by number)."""
    if method in METHODS:
        text = METHODS[method]
    else:
        doc = get_objective(method).doc
        text = f"`{method}`: " + " ".join(doc.split("\n\n")[0].split())
    numbers = sorted(set(re.findall(r"\b(00[0-4])\b", text)))
    return text, [(n, PAPERS[n]) for n in numbers]


def _value(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_value(v)}" for k, v in value.items()) or "{}"
    return str(value)


def _metrics(summary: dict[str, Any]) -> list[tuple[str, str]]:
    rows = {k: summary[k] for k in ("steps", "train_loss", "last_reward", "last_kl") if summary.get(k) is not None}
    rows |= {k: v for k, v in (summary.get("final_eval") or {}).items()
             if isinstance(v, (int, float)) and not k.endswith(("_runtime", "_per_second"))}
    return [(k, _value(v)) for k, v in rows.items()]


def _usage(repo: str, reward_model: bool, ensemble: bool) -> str:
    if ensemble:
        return ("from transformers import AutoModelForSequenceClassification\n\n"
                f"member = AutoModelForSequenceClassification.from_pretrained(\"{repo}\", subfolder=\"member_0\")")
    if reward_model:
        return ("from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
                f"model = AutoModelForSequenceClassification.from_pretrained(\"{repo}\")\n"
                f"tokenizer = AutoTokenizer.from_pretrained(\"{repo}\")\n"
                "# the reward is read at the EOS that closes the response (chat data: the chat template's turn)\n"
                "inputs = tokenizer(prompt + response + tokenizer.eos_token, return_tensors=\"pt\")\n"
                "reward = model(**inputs).logits[0, 0]")
    return ("from transformers import pipeline\n\n"
            f"generator = pipeline(\"text-generation\", model=\"{repo}\")\n"
            "print(generator([{\"role\": \"user\", \"content\": \"Hello!\"}], max_new_tokens=128)[0][\"generated_text\"])")


def model_card(output_dir: str | Path, cfg: Any, args: Any, summary: dict[str, Any], command: str,
               method: str) -> ModelCard:
    """The card of a finished run (see the module docstring)."""
    output_dir = Path(output_dir)
    fields = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    reward_model = command == "train-rm"
    ensemble = reward_model and fields.get("kind") == "ensemble"
    data = fields.get("data") or fields.get("prompts")
    base = base_model_of(fields.get("model"))
    repo = args.hub_model_id or output_dir.absolute().name
    adapter = (output_dir / "adapter_config.json").is_file()
    text, papers = describe_method(method)
    if command == "online":
        text = (f"Online: each step samples {fields.get('n_samples')} responses per prompt from the current policy "
                f"and scores them with `{_value(fields.get('reward'))}`; the loss is {text}")
    if ensemble:
        text = f"An ensemble of {fields.get('members')} reward models (`member_i/`, seeds seed + i), each: {text}"
    card_data = ModelCardData(
        library_name="peft" if adapter else "transformers", base_model=base, datasets=[hub_id(data)] if hub_id(data) else None,
        pipeline_tag="text-classification" if reward_model and method != "likelihood" else "text-generation",
        model_name=repo,
        tags=["rewardalign", method, *(["reward-model"] if reward_model else [])],
    )
    names = HYPERPARAMETERS + (ENSEMBLE if ensemble else ()) + (("oracle_alpha",) if method == "oracle" else ()) \
        + (("likelihood_beta",) if method == "likelihood" else ())
    hyper = [(k, _value(fields[k])) for k in names if fields.get(k) not in (None, {}, "")]
    hyper += [(k, _value(getattr(args, k))) for k in map(installed_name, TRAINING)
              if getattr(args, k, None) not in (None, 0, False)]
    hyper += [("seed", str(args.seed)), ("processes", str(args.world_size))]
    versions = [("rewardalign", __version__)] + [(p, metadata.version(p)) for p in
                                                  ("transformers", "torch", "datasets", "accelerate")]
    return ModelCard.from_template(
        card_data, template_str=TEMPLATE, command=command, what="A reward model" if reward_model else "A model",
        base_model=f"`{fields.get('model')}`", data=f"`{data}`" + (f" (split `{fields['split']}`)"
                                                                      if fields.get("split") else ""),
        method=text, papers=papers, hyperparameters=hyper, metrics=_metrics(summary),
        usage=_usage(repo, reward_model, ensemble), versions=versions)


def publish_run(folder: RunFolder, config: dict[str, Any], cfg: Any, args: Any, summary: dict[str, Any],
                command: str, method: str) -> str | None:
    """Write the run's model card into its folder, then ``config.yaml``, ``summary.json`` and the manifest
    (:meth:`RunFolder.finish`, so the card is in it); with ``args.push_to_hub``, upload the folder (not its
    checkpoints) and return the repository id. Call on the main process only."""
    output_dir = folder.path
    model_card(output_dir, cfg, args, summary, command, method).save(Path(output_dir) / "README.md")
    folder.finish(config, summary)
    if not args.push_to_hub:
        return None
    api = HfApi(library_name="rewardalign", library_version=__version__)
    repo = api.create_repo(args.hub_model_id or Path(output_dir).absolute().name, token=args.hub_token,
                           private=args.hub_private_repo, exist_ok=True)
    api.upload_folder(repo_id=repo.repo_id, folder_path=str(output_dir), commit_message="End of training",
                      token=args.hub_token, revision=args.hub_revision, ignore_patterns=["checkpoint-*", "_*"])
    return repo.repo_id
