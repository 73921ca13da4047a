"""Evaluation: everything measured on a policy, and reports over runs.

- :mod:`.metrics`: pure functions (mean reward with CI, win rate, KL estimate, likelihood displacement, length);
- :mod:`.evaluator`: ``evaluate_model``, everything measured on one policy (sampling from
  :mod:`rewardalign.modeling.generation`, rewards from any :mod:`rewardalign.rewards` source);
- :mod:`.run`: ``run_evaluate`` (an :class:`~.config.EvalConfig` -> ``eval.json``, ``samples.jsonl``);
- :mod:`.report` and :mod:`.plots`: ``compare_runs`` over run folders.
"""
