"""Bridges to other trainers: our tasks and rewards used from TRL (:mod:`.trl`) and verl (:mod:`.verl`).

Both score through the scoring service, so the hard deadlines, the sandbox and the typed outcomes
hold there as they do in ``grpo-env train``. Neither trainer is imported by grpo-env itself.
"""
