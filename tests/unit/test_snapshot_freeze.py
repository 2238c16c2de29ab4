"""Two runs in one process (host.json batchSize 2): the heap frozen after one run's reads stays
frozen until the last run that froze it ends; a run that never froze it does not unfreeze it."""

from __future__ import annotations

import gc

from shared.run import _SnapshotFreeze


def test_the_heap_is_unfrozen_when_the_last_run_that_froze_it_ends() -> None:
    freeze = _SnapshotFreeze()
    try:
        freeze.freeze("run-a")
        freeze.freeze("run-b")
        freeze.release("run-a")
        assert gc.get_freeze_count() > 0, "run-b is still working on its snapshot"
        freeze.release("refused-run")  # never froze anything
        assert gc.get_freeze_count() > 0
        freeze.release("run-b")
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
