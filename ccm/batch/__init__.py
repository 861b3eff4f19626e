"""Batch runs: streaming inputs, the worker pool, outputs and the print stream.

``run_batch`` renders one template for every row of a stream, resumable and
exactly once; see docs/batch.md.
"""

from __future__ import annotations

from ccm.batch.run import BatchEvent as BatchEvent
from ccm.batch.run import BatchSummary as BatchSummary
from ccm.batch.run import WorkerLimits as WorkerLimits
from ccm.batch.run import new_run_id as new_run_id
from ccm.batch.run import request_schema as request_schema
from ccm.batch.run import run_batch as run_batch

__all__ = [
    "BatchEvent",
    "BatchSummary",
    "WorkerLimits",
    "new_run_id",
    "request_schema",
    "run_batch",
]
