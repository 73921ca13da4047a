"""The demo: the whole pipeline of the papers on a gym task, offline, in one command.

    rewardalign demo [--quick] [--output runs/demo] [--task arithmetic] [--seed 0] [--force] [--field value ...]

Modules: :mod:`.config` (methods and ``DemoConfig``), :mod:`.stages` (stages 1-6), :mod:`.learning` (early
stopping of SFT and the quality gates), :mod:`.methods` (7-8), :mod:`.report` (9), :mod:`.pipeline` (``run_demo``).
The task is a built-in name or a spec of your own (``path/to/file.py:Class``, ``package.module:Class``;
docs/tasks.md); its source code is part of every cache key. Stages (each a public function, cached in the output
folder under a key of its settings, so a rerun or the claims benchmark reuses what is already built):

1. **data**: SFT demonstrations of the task (imperfect: the style facet only at chance), preference prompts,
   evaluation prompts (:func:`make_data`);
2. **SFT**: a tiny Llama and a BPE tokenizer built from a config, fine-tuned on the demonstrations until the gold
   reward of its samples on held-out prompts stops improving, at most ``sft_steps`` steps (:func:`train_sft`);
   then the first quality gate: SFT must clearly beat random responses (:mod:`.learning`), else the demo stops
   (exit 1) unless ``--force``;
3. **samples**: K = 4 responses per preference prompt sampled from the SFT policy (temperature 1), scored by
   the gold reward (:func:`sample_groups`). Duplicate samples are removed from their group, so some groups
   have K < 4; groups left with K < 2 carry no preference and are filtered for EVERY method (so all methods
   train on the same prompts) and counted in the report;
4. **human preferences**: every pair of each group's responses labelled by a Bradley-Terry draw on the gold
   reward (``annotator.temperature``, ``annotator.flip_prob``): the "human" preference data
   (:func:`preference_pairs`);
5. **reward model**: a Bradley-Terry reward model (``rm_kind: likelihood``, the default: the SFT model's own
   beta / |y| * log pi(y|x), SimPO's reward; ``bt``: a scalar head on the SFT model, the papers') trained on those
   pairs until its held-out pair accuracy stops improving, at most ``rm_epochs`` epochs
   (:func:`train_reward_model_stage`);
6. **annotation**: every response of the training and held-out groups scored by the reward model
   (:func:`annotate_groups`): ``rewards`` = the RM's r, ``scores`` = sigmoid(r) (``score_transform``:
   ``sigmoid``, or ``minmax`` over the observed range), ``labels`` = 1 where r is above its group's mean
   (a thumbs up for the better-than-average responses, the KTO/UNA binarisation of a scored group); then the
   second quality gate: the RM must order at least 60% of the held-out groups' response pairs as the gold reward;
7. **alignment**: each method on the SAME annotated groups (:func:`align_method`), each reading the feedback
   its paper uses (:data:`METHODS`): DRO, RPO, DRDO and SPO(-abs) the RM rewards of all K responses;
   UNA-score the scores; UNA-binary and KTO the binary labels; DPO, IPO and SimPO the pair (best, random
   other) of each RM-ranked group (``pairs: best_vs_random``, the Zephyr/UltraFeedback binarisation);
8. **evaluation**: each policy sampled on held-out prompts (:func:`evaluate_run`): gold reward mean (95% CI
   over prompts), win rate against the SFT policy's samples (same prompts, same sampling seed), KL(pi || SFT)
   (Monte-Carlo on the policy's samples), and the log-prob shift of the held-out groups' chosen (best by RM)
   and rejected (worst by RM) responses; beside SFT, the SFT policy sampled at ``sharpened_temperature`` (0.5)
   with no training (:func:`sharpened_row`): the gain that sharpening alone gives;
9. **report**: ``compare_runs`` (``compare.md``, ``compare.json``, ``training_curves.png``,
   ``reward_kl_frontier.png``, ``likelihood_drift.png``) plus ``report.md`` (setup, the table, the
   choices) and ``demo.json`` (everything, for machines) in the output folder.

Budget. Every method trains ``align_steps`` steps of ``align_batch_size`` groups (the same number of
gradient steps and groups for all, constant learning rate, Adam) at the learning rate and beta of :data:`METHODS`:
the same tuning budget for every method, the best of one grid, learning rate {3e-5, 1e-4, 3e-4} x (its paper's
beta x {1/3, 1, 3}), by held-out gold reward on the tuning seed 1000 of arithmetic, sort and count at the
``--quick`` sizes (``benchmarks/claims.py --tune``, which the claims benchmark measures with too), and for runs
nearer the default 200 steps than --quick's 40 the learning rate tuned again at 200 steps
(:data:`FULL_BUDGET_LEARNING_RATES`, ``benchmarks/tune_budget.py``); never tuned on a seed the demo measures.

Choices, and why:

- one reward model for everything: every method reads feedback derived from the same BT reward model trained
  on the same "human" pairs, so the comparison is between objectives, not between annotators;
- binary labels from the RM (above the group mean) rather than the gold threshold: a gold-threshold label would
  hand KTO and UNA-binary a noiseless annotator the others do not get; UNA's score-versus-binary claim (003)
  is then exactly "the RM's score against its own binarisation";
- scores = sigmoid(RM logit): a BT logit is a log-odds, so sigmoid(r) is the probability of beating a response
  of reward 0 (``score_transform: minmax`` rescales over the observed range instead);
- groups with K < 2 are removed for all methods alike (point-wise methods could use them; they would then see
  prompts the pairwise ones do not), and counted in the report;
- one torch thread (``threads``): the tiny model's matrices are too small for a second thread, and on a busy
  machine two threads were several times slower than one.

Seeded and deterministic: the same config and seed give the same table on the same machine (one thread also
keeps the floating-point reductions in a fixed order).
"""
