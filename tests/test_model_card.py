"""Run folders as the hub expects them: a model card written with huggingface_hub's ModelCard API, and
push_to_hub uploading the folder (the network calls replaced)."""

import json
from pathlib import Path

import pytest
from huggingface_hub import HfApi, ModelCard, ModelCardData
from huggingface_hub.repocard import RepoCard

from rewardalign.modeling.tiny import save_tiny
from rewardalign.runs import training_arguments
from rewardalign.train.configs import AlignConfig
from rewardalign.train.model_card import base_model_of, describe_method, hub_id, model_card
from rewardalign.train.sft import run_sft

TEXTS = ["tell red cat good slow", "tell blue dog bad fast"] * 10


def test_card_metadata_and_body(tmp_path):
    """A recipe's run on hub names: base_model and datasets in the metadata, the method with its paper, the
    hyperparameters and the final metrics in the body."""
    cfg = AlignConfig(model="Qwen/Qwen2.5-0.5B-Instruct", data="HuggingFaceH4/ultrafeedback_binarized",
                      split="train_prefs", objective="dro", objective_args={"beta": 0.05})
    args = training_arguments({"output_dir": str(tmp_path / "qwen-dro"), "learning_rate": 5e-7, "seed": 3,
                               "gradient_checkpointing": True}, "align")
    summary = {"steps": 100, "train_loss": 0.25, "final_eval": {"eval_loss": 0.2, "eval_runtime": 1.5}}
    card = model_card(tmp_path / "qwen-dro", cfg, args, summary, "align", "dro")
    assert card.data.base_model == "Qwen/Qwen2.5-0.5B-Instruct"
    assert card.data.datasets == ["HuggingFaceH4/ultrafeedback_binarized"]
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-generation"
    assert {"rewardalign", "dro"} <= set(card.data.tags)
    text = card.text
    assert "Direct Reward Optimization: A Point-wise Alignment Approach" in text  # paper 001, which dro cites
    assert "| objective_args | beta=0.05 |" in text and "| learning_rate | 5e-07 |" in text and "| seed | 3 |" in text
    assert "| train_loss | 0.25 |" in text and "| eval_loss | 0.2 |" in text and "eval_runtime" not in text
    assert "split `train_prefs`" in text
    assert text.count("_checkpointing | True |") == 1  # under the installed transformers' name, once
    # the card round-trips through huggingface_hub
    card.save(tmp_path / "README.md")
    assert RepoCard.load(tmp_path / "README.md").data.to_dict() == card.data.to_dict()


def test_hub_names_and_lineage(tmp_path):
    assert hub_id("nvidia/HelpSteer2") == "nvidia/HelpSteer2"
    (tmp_path / "runs" / "qwen-sft").mkdir(parents=True)
    assert hub_id(str(tmp_path / "runs" / "qwen-sft")) is None and hub_id("./x/y") is None and hub_id(None) is None
    # a run started from another run's output takes that run's base model as its own
    sft = tmp_path / "runs" / "qwen-sft"
    ModelCard(f"---\n{ModelCardData(base_model='Qwen/Qwen2.5-0.5B-Instruct').to_yaml()}\n---\n").save(sft / "README.md")
    assert base_model_of(str(sft)) == "Qwen/Qwen2.5-0.5B-Instruct"
    assert base_model_of(str(tmp_path)) is None
    text, papers = describe_method("una_score_mse")
    assert text.startswith("`una_score_mse`: UNA") and papers[0][0] == "003"
    assert describe_method("oracle")[1][0][0] == "002"


def test_push_to_hub_uploads_the_run_folder_with_its_card(tmp_path, monkeypatch):
    """With push_to_hub, the run creates the repository and, last, uploads its folder (checkpoints left out) with
    the card written; the network calls are replaced by recorders. (Trainer's own save_model pushes first, with
    its generic card, which ours replaces.)"""
    calls = []

    class Repo:
        repo_id = "someone/tiny-sft"

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs.get("private")))
        return Repo()

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        card = ModelCard.load(folder / "README.md")
        calls.append(("upload_folder", repo_id, folder, sorted(p.name for p in folder.iterdir()), card,
                      kwargs.get("ignore_patterns")))

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    rows = [{"prompt": t[:8], "responses": [t[8:]]} for t in TEXTS]
    (tmp_path / "demos.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    save_tiny(TEXTS, tmp_path / "tiny", vocab_size=300, hidden_size=32, num_layers=1, num_heads=2)
    out = tmp_path / "tiny-sft"
    run_sft({"model": str(tmp_path / "tiny"), "data": str(tmp_path / "demos.jsonl"), "output_dir": str(out),
             "max_length": 32, "max_steps": 2, "disable_tqdm": True, "push_to_hub": True,
             "hub_model_id": "tiny-sft", "hub_private_repo": True})
    uploads = [c for c in calls if c[0] == "upload_folder"]
    assert ("create_repo", "tiny-sft", True) in calls and calls[-1][0] == "upload_folder"
    assert {c[1] for c in uploads} == {"someone/tiny-sft"}
    _, repo_id, folder, files, card, ignored = uploads[-1]
    assert repo_id == "someone/tiny-sft" and folder == out
    assert {"README.md", "model.safetensors", "config.json", "tokenizer.json", "summary.json"} <= set(files)
    assert "checkpoint-*" in ignored
    assert card.data.tags == ["rewardalign", "sft"] and "Supervised fine-tuning" in card.text
    assert "| steps | 2 |" in card.text


@pytest.mark.parametrize("method", ["bt", "dpo", "spo", "drdo", "rloo"])
def test_every_method_has_a_description(method):
    assert describe_method(method)[0]
