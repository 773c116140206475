"""reasoning-gym's datasets seen as grpo-env data: which are exposed, their options, their entries.

A dataset's options are its config dataclass's fields (each ``None`` by default, meaning "the
dataset's default or the curriculum's value") plus, where reasoning-gym has a curriculum for it,
``difficulty``: the curriculum level set on every attribute (clamped to that attribute's last
level). Entries are generated lazily by index from seeded chunks, so a stream is endless and
deterministic for a (split, seed). Entries are kept as the dataset made them: some scorers compare
against tuples in the metadata, which a JSON round trip (a ``grpo-env score`` file) turns into
lists; the conformance table shows which datasets that changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import typing
from contextlib import contextmanager
from functools import cache
from typing import Any, Iterator, Optional

import numpy as np
from reasoning_gym.dataset import ProceduralDataset
from reasoning_gym.factory import CURRICULA, DATASETS
from reasoning_gym.utils import SYSTEM_PROMPTS

PREFIX = "rg."
CHUNK = 1000  # entries per seeded dataset instance (construction can cost up to a second)
RESERVED = ("seed", "size")  # config fields the plugin sets itself
EXCLUDED = {"composite": "a mix of other datasets with no default config: use those datasets directly"}

# Datasets that override score_answer but keep upstream's substring rule in it (reasoning-gym 0.1.25):
# chain_sum and products through utils.compute_decimal_reward, codeio when the answer has braces but
# is not JSON, manipulate_matrix after normalising whitespace, tsumego after upper-casing. Every
# dataset that keeps ProceduralDataset.score_answer is in the family too. The conformance check
# probes each scorer for the rule and flags a dataset that shows it but is not scored by exact match.
OWN_SUBSTRING_RULE = frozenset({"chain_sum", "codeio", "manipulate_matrix", "products", "tsumego"})

# Datasets outside that family whose upstream partial credit goes to answers that commit to nothing
# (a junk constant, the most frequent gold, a hedge of the golds seen, an echo of the question): the
# conformance record lists them (``farmed``) and a test checks this list against it.
FARMED_PARTIAL = frozenset({
    "advanced_geometry", "arc_agi", "boxnet", "calendar_arithmetic", "coin_flip", "color_cube_rotation",
    "complex_arithmetic", "countdown", "cryptarithm", "emoji_mystery", "figlet_font",
    "fraction_simplification", "futoshiki", "game_of_life", "graph_color", "group_anagrams", "gsm_symbolic",
    "jugs", "knight_swap", "letter_jumble", "mini_sudoku", "palindrome_generation", "polynomial_equations",
    "power_function", "prime_factorization", "propositional_logic", "puzzle24", "quantum_lock", "rearc",
    "rectangle_count", "rubiks_cube", "rush_hour", "sentence_reordering", "spell_backward", "sudoku",
    "time_intervals", "tower_of_hanoi", "word_sorting",
})

LENIENT = "lenient_substring"  # the opt-in to upstream's substring rule (the substring-credit family)
PARTIAL = "partial_credit"  # the opt-in to upstream's partial credit (FARMED_PARTIAL)


def uses_substring_rule(name: str) -> bool:
    """Whether the dataset's scorer credits the gold inside other text (``len(gold)/len(answer)``)."""
    cls = DATASETS[name][0]
    return cls.score_answer is ProceduralDataset.score_answer or name in OWN_SUBSTRING_RULE


def exact_option(name: str) -> str | None:
    """The option that turns upstream's partial credit back on, for a dataset ``rg.score`` scores by
    exact match by default (only upstream's full marks count); None for the others."""
    if uses_substring_rule(name):
        return LENIENT
    if name in FARMED_PARTIAL:
        return PARTIAL
    return None


def dataset_names() -> list[str]:
    """Every reasoning-gym dataset exposed as a task, sorted."""
    return sorted(n for n in DATASETS if n not in EXCLUDED)


def config_class(name: str) -> type:
    return DATASETS[name][1]


@cache
def config_fields(name: str) -> dict[str, tuple[Any, Any]]:
    """``{field: (type, default)}`` of a dataset's config, without the fields the plugin sets."""
    cls = config_class(name)
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: accept any value, the config validates it
        hints = {}
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in RESERVED or not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = None
        out[f.name] = (hints.get(f.name, Any), default)
    return out


def has_curriculum(name: str) -> bool:
    return name in CURRICULA


def max_difficulty(name: str) -> int:
    """The highest curriculum level of any attribute of the dataset's curriculum."""
    curriculum = CURRICULA[name]()
    return max(len(a.levels) for a in curriculum.attributes.values()) - 1


def stream_seed(*parts: Any) -> int:
    """A 32-bit seed from any parts (stable across processes, unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big")


def config_kwargs(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The dataset config's keyword arguments for validated task options.

    Curriculum values first (when ``difficulty`` is given), then every option set explicitly.
    """
    kwargs: dict[str, Any] = {}
    level = options.get("difficulty")
    if level is not None:
        curriculum = CURRICULA[name]()
        for attr in curriculum.attributes.values():
            curriculum.set_attr_level(attr.name, min(level, len(attr.levels) - 1))
        generated = curriculum.generate_configuration({})
        kwargs.update({k: getattr(generated, k) for k in config_fields(name)})  # not asdict: it flattens
    kwargs.update({k: v for k, v in options.items() if k in config_fields(name) and v is not None})
    return kwargs


def build(name: str, config: dict[str, Any], seed: int, size: int = CHUNK):
    """A dataset instance for a config (as ``config_kwargs`` gives it), seed and size."""
    dataset_cls, cfg_cls = DATASETS[name]
    cfg = cfg_cls(**config, seed=seed, size=size)
    return dataset_cls(config=cfg)


def json_copy(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The entry as a JSON file gives it back (tuples become lists)."""
    try:
        return json.loads(json.dumps(entry))
    except (TypeError, ValueError) as e:
        raise ValueError(f"reasoning-gym dataset {name!r} produced an entry that is not JSON: {e}") from None


@contextmanager
def pinned_global_rngs(seed: int):
    """Seed Python's and numpy's global generators for one entry, then put the caller's state back.

    A few generators draw from the global ``random`` besides their seeded ``Random`` (``codeio``
    runs data-set code that does; ``list_functions`` has helpers that do): their entries would
    differ between two runs, and a resumed run would not see the examples the first one saw.
    """
    saved, saved_np = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved)
        np.random.set_state(saved_np)


def entries(name: str, config: dict[str, Any], split: str, seed: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Endless ``(id, entry)`` pairs: chunk after chunk, each a dataset instance with its own seed."""
    chunk = 0
    while True:
        chunk_seed = stream_seed(name, split, seed, chunk)
        ds = build(name, config, seed=chunk_seed)
        for i in range(CHUNK):
            with pinned_global_rngs((chunk_seed + i) % 2**32):
                entry = ds[i]
            yield f"{name}-{split}-{seed}-{chunk}-{i}", entry
        chunk += 1


def system_prompt(key: Optional[str]) -> str | None:
    return None if key is None else SYSTEM_PROMPTS[key]
