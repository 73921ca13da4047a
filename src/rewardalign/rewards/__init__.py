"""Rewards: ONE :class:`RewardSource` abstraction for every reward, reward models, transforms and annotation.

- :mod:`.base`: :class:`RewardSource` (``score(prompts, responses) -> [N] or [N, M]``), ``score_finite``;
- :mod:`.sources`: rules, gym gold rewards, imported columns, and :func:`build_source`, which parses every way
  of naming a reward (``rm:<path>``, ``rule:<module>:<function>``, ``gym:<task>``, a mapping, a callable);
- :mod:`.model_sources`: reward model, ensemble and teacher-ratio sources;
- :mod:`.models`: reward models (any transformers sequence-classification model with one label), the
  oracle's training wrapper, ensembles;
- :mod:`.losses`: Bradley-Terry (margin, centering) and the Oracle's BT + NLL loss;
- :mod:`.pairs`: preference pairs from groups;
- :mod:`.transforms`: none / standardize / minmax / sigmoid;
- :mod:`.annotate`: ``run_annotate``, cached.

Reward-model TRAINING is a trainer (:mod:`rewardalign.train.reward_model`), one layer up.
"""
