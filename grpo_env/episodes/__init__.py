"""Episodes: each environment's episode in a process of its own, under per-step and per-episode deadlines.

- :mod:`grpo_env.episodes.local`: the episode host on this machine (a forked process per episode,
  from the trainer or from a zygote started before the model loaded);
- :mod:`grpo_env.episodes.ray`: episodes in actors on the nodes of a Ray cluster, each node running
  the local host; an episode whose node is lost is replayed from its turns on another node.
"""

from grpo_env.episodes.local import (FORKS_ENV, MAX_OBSERVATION_CHARS, EpisodeBatch, EpisodeHost, EpisodeZygote,
                                     Played, play, start_zygote)

__all__ = ["FORKS_ENV", "MAX_OBSERVATION_CHARS", "EpisodeBatch", "EpisodeHost", "EpisodeZygote", "Played", "play",
           "start_zygote"]
