"""What a tune tells the user and the logs: the progress bar, one JSON line per trial, the callbacks that
record trials elsewhere (MLflow), and the lines said before and after."""
from __future__ import annotations

import json
import logging
import sys
from typing import Callable

from tqdm.auto import tqdm

from ..core.records import TrialRecord

logger = logging.getLogger("engine.tuning")


class TrialReporter:
    def __init__(self, progress: bool = True, log_file_name: str | None = None,
                 on_trial: Callable[[TrialRecord], None] | None = None, total: int | None = None):
        self.progress = progress
        self.log_file_name = log_file_name
        self.on_trial = on_trial
        self.total = total
        self._bar = None

    def __enter__(self) -> "TrialReporter":
        self._bar = tqdm(total=self.total, desc="tune", unit="trial", disable=not self.progress)
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()

    def trial(self, record: TrialRecord, best: float | None, charged: float, paid: float) -> None:
        """One finished trial: its JSON line, its callback, the bar."""
        if self.log_file_name:
            with open(self.log_file_name, "a") as f:
                f.write(json.dumps(record.as_dict(), default=str) + "\n")
        if self.on_trial is not None:
            self.on_trial(record)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(best=best, used=f"${charged:.5f}", paid=f"${paid:.5f}", refresh=False)

    def say(self, line: str) -> None:
        if self.progress:
            tqdm.write(line, file=sys.stderr)
        else:
            logger.info(line)
