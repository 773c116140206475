"""Freed host memory is reused: a second large tensor does not fault in fresh pages."""

import subprocess
import sys

import pytest

PROBE = """
import resource, sys, torch
from grpo_env.engine.memory import reuse_freed_memory

def faults_of_a_fresh_256mb_tensor():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.ones(64 * 2**20)  # 256 MB, every page written
    del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

first = faults_of_a_fresh_256mb_tensor()
default = faults_of_a_fresh_256mb_tensor()  # glibc default: mmap'd again, every page faulted again
took = reuse_freed_memory()
faults_of_a_fresh_256mb_tensor()  # lands in the heap once
reused = faults_of_a_fresh_256mb_tensor()
print(took, default, reused)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_a_large_tensor_reuses_the_pages_of_the_last_one():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    took, default, reused = out[0] == "True", int(out[1]), int(out[2])
    assert took
    pages = 256 * 2**20 // 4096
    assert default > pages // 2  # without it: every page faulted again (the check below can fail)
    assert reused < pages // 20, (default, reused)
