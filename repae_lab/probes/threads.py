"""Run probe-sized linear algebra on one thread.

The probes do many small operations (a 256 x 256 eigenproblem, a 750 x 256 logistic regression, UMAP's
numba kernels). Handed two threads on a busy 2-core laptop, MKL / OpenMP / numba spend most of their time
spin-waiting for a core: measured here, a 256 x 256 eigvalsh took 2.8 s of CPU on two threads and 4 ms on
one. One thread is never much slower for problems this size and avoids that cliff entirely.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager

import torch
from threadpoolctl import threadpool_limits


@contextmanager
def single_threaded():
    """torch, BLAS/OpenMP (via threadpoolctl) and, if loaded, numba limited to one thread; restored on exit."""
    torch_threads = torch.get_num_threads()
    numba = sys.modules.get("numba")      # only touch numba if something already imported it
    numba_threads = numba.get_num_threads() if numba is not None else None
    torch.set_num_threads(1)
    if numba is not None:
        numba.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(torch_threads)
        if numba is not None and numba_threads is not None:
            numba.set_num_threads(numba_threads)
