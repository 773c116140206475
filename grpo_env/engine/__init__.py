"""The GRPO engine: sampling, advantages, the clipped KL-penalised loss and the training loop.

Free of plugin machinery: it takes a scoring callable ``score_fn(examples, completions) -> list[Scored]``.
"""
