"""rewardalign: align language models directly on explicit rewards.

One data shape (a prompt with K scored responses, :class:`rewardalign.data.Group`), objectives as pure
functions of [B, K] tensors (:mod:`rewardalign.objectives`), and a trainer built on ``transformers.Trainer``.
"""

__version__ = "0.1.0"
