"""Trials in flight together: FLAML's searcher proposes configs, up to `width` trials run at once on the
session's event loop, and their results go back to the searcher in the order it proposed them.

Determinism is kept by three rules, so that a rerun served from the cache makes the same decisions:
- the searcher is asked for a new config only right after a result is reported, and results are reported in
  suggestion order (a faster later trial waits for the earlier ones);
- what a trial may assume when it starts (the best metric to beat, the (max_tokens, n) pairs known to be too
  expensive) is a snapshot of the reported trials taken when it was suggested;
- money is admitted per trial, in suggestion order, at the trial's worst case (`OrderedAdmission`).
"""
from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass
from typing import Awaitable, Callable

from ..requests.budget import BudgetGuard
from ..core.records import TrialRecord
from .flaml_adapter import as_flaml_result

MAX_EMPTY_SUGGESTIONS = 100  # FLAML's own limit on consecutive suggestions that came back empty


@dataclass(frozen=True)
class Snapshot:
    """What a trial may assume, fixed when it was suggested."""

    best: float | None
    too_expensive: bool


class OrderedAdmission:
    """A trial's money is reserved at its worst case before it sends anything, in suggestion order. A trial
    that does not fit waits while earlier trials still hold reservations (they settle at or below them); it
    is refused only once they are all settled, so the answer is the same in every run. After one refusal,
    every later trial is refused: the budget has ended the search."""

    def __init__(self, guard: BudgetGuard):
        self.guard = guard
        self._next = 1
        self._holding: set[int] = set()
        self._refused = False
        self._changed = asyncio.Condition()

    async def admit(self, number: int, worst_case: float) -> BudgetGuard | None:
        """The trial's own allowance (a guard limited to its worst case), or None when refused."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._next == number)
            while not self._refused and not self.guard.admit([worst_case]):
                if not self._holding:
                    self._refused = True
                    break
                await self._changed.wait()
            self._next += 1
            if not self._refused:
                self._holding.add(number)
            self._changed.notify_all()
            return None if self._refused else BudgetGuard(worst_case)

    async def pass_turn(self, number: int) -> None:
        """A trial that needs no money (pruned before sending anything) still takes its turn in the order."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._next == number)
            self._next += 1
            self._changed.notify_all()

    async def settle(self, number: int, worst_case: float, allowance: BudgetGuard) -> None:
        """Replace the trial's reservation by what it cost; what may have been billed unanswered stays."""
        async with self._changed:
            self.guard.close_allowance(worst_case, allowance)
            self._holding.discard(number)
            self._changed.notify_all()


class TrialScheduler:
    """Runs `start(number, config, snapshot)` for the searcher's configs, `width` at a time; `report(number,
    record)` receives each finished trial in suggestion order and returns FLAML's result, or None to stop."""

    def __init__(self, runner, width: int, num_samples: int,
                 snapshot: Callable[[dict], Snapshot],
                 start: Callable[[int, dict, Snapshot], Awaitable[TrialRecord | None]],
                 report: Callable[[TrialRecord], dict | None], halt: Callable[[], None]):
        self.runner = runner  # FLAML's SequentialTrialRunner over the searcher: it keeps the trials
        self.width = width
        self.num_samples = num_samples
        self.snapshot = snapshot
        self.start = start
        self.report = report
        self.halt = halt  # stops new requests: what is in flight completes (and is cached)

    async def run(self) -> None:
        in_flight: deque = deque()
        try:
            await self._loop(in_flight)
        except BaseException:
            # a failure ends the tune: the other trials send nothing more, and what they have in flight is
            # waited for, so that every answer paid for reaches the cache before the error is raised
            self.halt()
            await asyncio.gather(*(task for _, task in in_flight), return_exceptions=True)
            raise

    async def _loop(self, in_flight: deque) -> None:
        numbers = itertools.count(1)
        stopping, empty = False, 0
        while True:
            while not stopping and len(in_flight) < self.width and (
                    self.num_samples < 0 or len(self.runner.get_trials()) < self.num_samples):
                trial = self.runner.step()
                if trial is None:
                    empty += 1
                    break
                empty = 0
                number = next(numbers)
                task = asyncio.ensure_future(self.start(number, trial.config, self.snapshot(trial.config)))
                in_flight.append((trial, task))
            if not in_flight:
                if stopping or empty == 0 or empty >= MAX_EMPTY_SUGGESTIONS:
                    return
                continue  # nothing to wait for: ask the searcher again
            trial, task = in_flight.popleft()
            record = await task
            result = self.report(record) if record is not None else None
            if result is None:
                stopping = True  # finish what is in flight (its money is admitted), suggest nothing more
            else:
                self.runner.process_trial_result(trial, as_flaml_result(result, trial.config))
            self.runner.stop_trial(trial)
