"""Training: data, samplers, losses, optimisers/schedules, checkpoints, DDP, the loop.

Entry point: :func:`signflow.training.run.train` (used by ``stages/train.py``).
Modules, one job each: ``data`` (datasets over shard folders), ``sampler``,
``losses``, ``optim``, ``checkpoint``, ``feature_cache``, ``distributed``,
``loop`` (the one train/validate loop), ``run`` (wiring).
"""
