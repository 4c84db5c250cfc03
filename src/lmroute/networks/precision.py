"""The number precision the classifier networks compute in, and what each one promises.

A prompt's score should not depend on the batch it is scored in: evaluation, calibration and a
server's micro-batches see the same prompt in different company. Padding to a batch's longest
prompt is masked exactly (padded positions get zero attention weight), but a batch's shape still
decides how the matrix products block their sums, so the rounding of a prompt's numbers depends
on its batch. Measured on MiniLM (issue 13): batches of equal-length prompts move the result as
much as padded ones once their row counts differ (and score 2-3x slower: many small batches), so
only one prompt per call (4-10x slower) would make scores independent of the batch to the bit.
What each precision promises:

* ``"float32"``: a prompt's score moves with its batch only by float32 rounding: under 1e-6 for
  bert (measured at most 5e-8 over 400 prompts), under 1e-5 for causal_llm's label
  probabilities (measured 4e-6 over 64 prompts, 16 layers). The choice where scores must agree
  across batchings and machines.
* ``"bfloat16"``: products are rounded to 8 significant bits, so a prompt's score moves with its
  batch by up to about 1e-4 for bert (measured 1.2e-4) and 1e-2 for causal_llm (measured 9.9e-3:
  enough to flip a routing decision near the threshold). Faster than float32 on a CPU with native
  bfloat16 instructions (bert: 1.5x on a loaded 2-core machine, about 2x idle), slower on one
  without them.
* ``"auto"``: bfloat16 where the CPU has native bfloat16 instructions (AVX512-BF16 or AMX), else
  float32; it promises what it resolves to.

The tests hold each precision, forced, to these bounds with a margin (bert 1e-6 and 1e-3,
causal_llm 1e-5 and 3e-2), and "auto" with the CPU check replaced. Training computes the frozen
layers' features in the scoring precision and trains in float32.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

Precision = Literal["auto", "float32", "bfloat16"]


def uses_bfloat16(precision: Precision) -> bool:
    """Whether ``precision`` computes in bfloat16 on this CPU (``"auto"``: where it is native)."""
    if precision == "auto":
        return native_bfloat16()
    return precision == "bfloat16"


@cache
def native_bfloat16() -> bool:
    """Whether this CPU has native bfloat16 instructions (from ``/proc/cpuinfo``; False elsewhere)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
