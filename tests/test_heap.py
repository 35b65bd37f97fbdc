"""A training process keeps freed memory for its next step: no page faults on memory it has already used."""

import os
import platform
import subprocess
import sys

import pytest

from mix2 import default_config, run

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Five training steps of the half-width network on a batch of 4, with or without keep_freed_heap_memory first;
# prints the minor page faults a step of the last three takes: one per 4-KiB page written for the first time
# since the system handed it over.
STEP_FAULTS_PROBE = """
import resource, sys, torch
from mix2.heap import keep_freed_heap_memory
from mix2.models import create_model

if sys.argv[1] == "kept":
    keep_freed_heap_memory()
torch.manual_seed(0)
model = create_model("mobilenetv3_large_050", num_classes=4)
optimizer = torch.optim.AdamW(model.parameters())
inputs, targets = torch.randn(4, 1, 128, 188), torch.ones(4, 4)

def step():
    optimizer.zero_grad()
    torch.nn.functional.binary_cross_entropy_with_logits(model(inputs), targets).backward()
    optimizer.step()

step(), step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
step(), step(), step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 3)
"""


def faults_per_step(memory: str) -> int:
    probe = [sys.executable, "-c", STEP_FAULTS_PROBE, memory]
    return int(
        subprocess.run(probe, capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout
    )


@pytest.mark.skipif(not GLIBC, reason="the heap settings are glibc's; other C libraries are left as they are")
def test_training_steps_reuse_their_memory_instead_of_faulting_it_in_again():
    as_given, kept = faults_per_step("given"), faults_per_step("kept")
    assert as_given > 1000  # glibc hands a step's blocks back, and the next step faults them in again
    assert kept < as_given / 5


def test_the_trainer_of_a_run_keeps_freed_memory(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(run, "keep_freed_heap_memory", lambda: calls.append("kept") or True)
    run.lightning_trainer(default_config("chorus"), tmp_path, "val_map", "max", progress=False, resumed_epoch=None)
    assert calls == ["kept"]
