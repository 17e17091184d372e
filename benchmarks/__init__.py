"""medssl's benchmarks, each run from the repository's root as ``python -m benchmarks.<name>``:
the suite (``run``: data pipeline, training throughput, end-to-end, ingestion, torch.compile) and
its parts, the learning benchmark (``learning``) with its views ablation (``views``) and learning
curves (``curves``), and the single measurements (``checkpoint_io``, ``store_io``,
``online_probe``, ``sync_batchnorm``, ``peers``). They import each other as
``benchmarks.<name>``; what they share (machine name, registered methods and their configs,
writing a report to ``benchmarks/results/``) is in ``benchmarks.common``.
"""
