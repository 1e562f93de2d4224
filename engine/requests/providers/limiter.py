"""How many requests may be in flight to one endpoint: an AIMD limit that finds what the endpoint allows.

Every attempt to an endpoint takes a slot of its `AdaptiveLimit` before it is sent and gives it back with what
its answer said (`ProviderClient` does both, keyed by the endpoint's identity, for every trial of the process):

- a healthy answer adds to the limit: 1 per answer while no congestion was ever seen (slow start: the limit
  doubles per round trip), then 1/limit per answer (about +1 per round trip), and `PROBE` times less while the
  next slot is the one that was congested last time (a plateau, as TCP CUBIC's), twice less again each time
  about that level is congested anew, so that a hard limit of N is probed rarely; only while at least half
  the limit is in use, so an idle endpoint's limit does not drift up untested;
- a congestion signal (a timeout, or an answer slower than `LATENCY_TOLERANCE` times the fastest seen for
  requests of its size) multiplies it by `BACKOFF`, at most once per round trip: attempts sent before the last
  cut carry its old epoch and cut no more (a burst of them is one signal);
- a refusal (429, a Retry-After, 502/503/504) says how many in flight were too many: the limit becomes one
  less than the number in flight the refused attempt was sent with (each refusal of a burst, e.g. a slow
  start's overshoot, may lower it so; only the first counts as a cut for the plateau below);
- a 429 is blamed on the send rate instead when it cannot be the number in flight: the refused attempt was
  sent with no more in flight than lately came back healthy (`RECENT`), or the rate held it back, or it is of
  the burst that last cut the rate. It engages or cuts the endpoint's `Pacer` (pacer.py), which spaces sends
  at a rate learned as the AWS SDKs' adaptive mode learns it: a limit in requests per second (OpenAI's RPM)
  is a limit in flight only through the answers' latency, which changes with max_tokens and n, and AIMD on
  the number in flight alone kept cutting below what such a limit allows (`make bench-peer`);
- it stays between the model's `concurrency.floor` and `concurrency.ceiling` (conf/model/*.yaml);
- a congested attempt keeps its slot for the server's Retry-After (else until an answer of its size would have
  come): a 429 comes back at once, and a slot freed at once would send the next request into the same
  per-second limit; held slots make the sending wait as the server asked (self-clocking).

Why AIMD rather than a gradient limiter (Netflix concurrency-limits' Gradient2, which steers on the ratio of
long-term to recent latency): a rate-limited API says "too many" in words (429 + Retry-After) and AIMD acts on
exactly that; an LLM answer's latency is dominated by how many tokens it generates (max_tokens and n change
from trial to trial), so latency alone is a noisy congestion signal, and here it only backs AIMD up, compared
within one size class. Under a hard limit of N in flight it settles at N, trying N + 1 about once per
MAX_PROBE * N answers.

An explicit `concurrency` pins the limit: `PINNED` (a context variable, set by the Evaluator for its requests
and inherited by their tasks) makes those requests take a fixed limit of n per endpoint instead.
The limit is thread-safe and serves waiters on any event loop.
"""
from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections import deque
from dataclasses import dataclass

from .pacer import Pacer

BACKOFF = 0.8  # the limit after a congestion signal, as a share of what it was
PROBE = 4  # near the level of the last congestion, the limit grows this many times more slowly
MAX_PROBE = 32  # doubled, up to this, each time the same level is congested again (a hard limit)
MAX_HOLD = 30.0  # seconds a congested attempt keeps its slot at most, whatever Retry-After says
RECENT = 1.0  # seconds: how long a level of sending answered healthy counts as known to be fine
LATENCY_TOLERANCE = 3.0  # an answer this many times slower than the fastest of its size is a congestion signal
LATENCY_DRIFT = 1.002  # the fastest latency seen creeps up per answer, so a server that got slower for good is
# not held to its best moment forever

# the requests in flight an explicit `concurrency` pins per endpoint, for the requests of this context
PINNED: contextvars.ContextVar[int | None] = contextvars.ContextVar("engine_pinned_concurrency", default=None)

# what an attempt's end says to the limit: answered; refused for load (429, 502/503/504, a Retry-After);
# congested otherwise (timed out, or far slower than its size); nothing of the load (e.g. a 400)
OK, REFUSED, CONGESTED, NEUTRAL = "ok", "refused", "congested", "neutral"


@dataclass(frozen=True)
class Limits:
    """Where a limit starts and the bounds it stays within."""

    floor: int = 1
    ceiling: int = 64
    start: int = 8

    def __post_init__(self):
        if not (1 <= self.floor <= self.start <= self.ceiling):
            raise ValueError(f"concurrency needs 1 <= floor <= start <= ceiling, got {self}")


class AdaptiveLimit:
    """The slots of one endpoint. `acquire()` waits for a slot and returns a ticket; `release(ticket, signal,
    latency, size)` gives it back with what the attempt's end said (OK, CONGESTED or NEUTRAL)."""

    def __init__(self, limits: Limits, fixed: bool = False):
        self.limits = limits
        self.fixed = fixed  # a pinned limit: signals change nothing
        self.limit = float(limits.start)
        self.in_flight = 0
        self.peak = 0  # the most in flight at once
        self.highest = self.limit  # the highest the limit reached
        self.cuts = 0  # congestion signals that lowered the limit
        self._slow_start = True
        self._congested_level: int | None = None  # the slots in use when congestion was last signalled
        self._probe = PROBE
        self._epoch = 0  # bumped per cut: an attempt sent before it cuts nothing more
        self._fastest: dict = {}  # size class -> the fastest latency seen (creeping up)
        self._waiters: deque = deque()  # (loop, future) in arrival order
        self._lock = threading.Lock()
        self.pacer = Pacer()  # the send rate a 429 engages (pacer.py); never for a pinned limit
        self.sending = 0  # attempts sent and not yet answered (neither held for a Retry-After nor being paced)
        self._ok_level, self._ok_at = 0, 0.0  # the most sending at once of an answer that came back healthy, lately

    @property
    def allowed(self) -> int:
        return int(self.limit)

    async def acquire(self) -> tuple:
        """Wait for a slot (first come, first served), then for the pacer's spacing if a 429 engaged it;
        returns the ticket to give back to `release`."""
        waiter = None
        with self._lock:
            if not self._waiters and self.in_flight < int(self.limit):
                ticket = self._take()
            else:
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append((asyncio.get_running_loop(), waiter))
        if waiter is not None:
            try:
                ticket = await waiter  # the slot was taken for us by the one who woke us
            except asyncio.CancelledError:
                with self._lock:
                    if waiter.done() and not waiter.cancelled():
                        self._give_back()  # granted, then cancelled before it ran: the slot goes on
                    else:
                        self._waiters = deque(w for w in self._waiters if w[1] is not waiter)
                raise
        if ticket[2] > 0.0:
            ticket = await self._paced(ticket)
        with self._lock:
            self.sending += 1
            return (*ticket, self.sending)

    async def _paced(self, ticket: tuple) -> tuple:
        """Hold the slot until the pacer's booked start; a rate cut meanwhile books this send again at the new
        rate (the old schedule was the refused rate). The ticket says it was paced (a 429 on it blames the rate)."""
        epoch, booked, wait = ticket
        while True:
            try:
                await asyncio.sleep(wait)
            except asyncio.CancelledError:
                with self._lock:
                    self._give_back()
                raise
            with self._lock:
                if booked == self.pacer.cuts:
                    return epoch, booked, wait
                epoch, booked, wait = self._epoch, self.pacer.cuts, self.pacer.reserve(time.monotonic())

    def release(self, ticket: tuple, signal: str = NEUTRAL, latency: float | None = None, size=None,
                retry_after: float | None = None) -> None:
        """A congested attempt keeps its slot (from a running event loop) for the server's `retry_after`, else
        until an answer of its size would have come: a 429 comes back at once, and a slot freed at once would
        send the next request straight into the same limit, as fast as the server refuses them."""
        with self._lock:
            self.sending -= 1
            hold = 0.0
            if signal in (REFUSED, CONGESTED) and not self.fixed:
                if retry_after is not None:
                    hold = min(retry_after, MAX_HOLD)
                elif latency is not None:
                    hold = self._fastest.get(size, 0.0) - latency
            if hold > 0.0:
                asyncio.get_running_loop().call_later(hold, self._give_back_later)
            else:
                self.in_flight -= 1
            if not self.fixed:
                if signal == OK and latency is not None and self._slow_for(size, latency):
                    signal = CONGESTED
                if signal == OK:
                    self._answered_at(ticket[3])
                if signal in (REFUSED, CONGESTED):
                    self._cut(ticket, signal == REFUSED)
                elif signal == OK:
                    self._grow()
            self._dispatch()

    def _take(self) -> tuple:
        """Count a slot as taken; its ticket: (the cut epoch, the pacer's cuts when booked, seconds to wait)."""
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.fixed:
            return self._epoch, None, 0.0
        return self._epoch, self.pacer.cuts, self.pacer.reserve(time.monotonic())

    def _give_back_later(self) -> None:
        with self._lock:
            self._give_back()

    def _give_back(self) -> None:
        self.in_flight -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots to the waiters in order (each slot is counted here, for the waiter it goes to)."""
        while self._waiters and self.in_flight < int(self.limit):
            loop, waiter = self._waiters.popleft()
            ticket = self._take()
            loop.call_soon_threadsafe(self._grant, waiter, ticket)

    def _grant(self, waiter: asyncio.Future, ticket: tuple) -> None:
        if waiter.done():  # cancelled while the grant was on its way
            with self._lock:
                self._give_back()
        else:
            waiter.set_result(ticket)

    def _cut(self, ticket: tuple, refused: bool) -> None:
        self._slow_start = False
        epoch, _, wait, level = ticket
        now = time.monotonic()
        if refused and (wait > 0.0 or self.pacer.cut_within(now) or (
                level <= self._ok_level and now - self._ok_at <= RECENT)):
            # a 429 on a send the rate held back, or of the burst that cut the rate, or sent with no more in
            # flight than had lately been answered: not a limit in flight, a rate (the pacer engages or is cut,
            # or counts a burst's further 429 as one request too many)
            if self.pacer.refused(now, before_cut=epoch != self._epoch):
                self._epoch += 1
            return
        floor = float(self.limits.floor)
        if epoch != self._epoch:  # sent before the last cut: that cut already answered this congestion, but a
            if refused:  # 429 says how many in flight were too many (a slow start's overshoot): fewer than it
                self.limit = max(floor, min(self.limit, level - 1.0))
            return
        self._epoch += 1
        self.cuts += 1
        top, last = (level if refused else int(self.limit)), self._congested_level
        # congested again at or just above the last level (a hard wall, or a limit the limit keeps meeting at
        # about the same level): probe it more slowly still
        self._probe = min(self._probe * 2, MAX_PROBE) if last is not None and top <= last + 1 else PROBE
        self._congested_level = top
        # a 429 says how many in flight were too many: the limit becomes one less than the refused attempt was
        # sent with (a hard limit of N is kept at N, not cut to 0.8 N and grown back); other congestion (a
        # timeout, an answer far slower than its size) says no number, and cuts it by BACKOFF
        self.limit = max(floor, min(self.limit, level - 1.0) if refused else self.limit * BACKOFF)

    def _answered_at(self, level: int) -> None:
        """Keep the most sent at once of an answer that came back healthy in the last RECENT seconds (about)."""
        now = time.monotonic()
        if level >= self._ok_level or now - self._ok_at > RECENT:
            self._ok_level, self._ok_at = level, now

    def _grow(self) -> None:
        if (self.in_flight + 1) * 2 < self.limit:
            return  # less than half of it was in use: the answer says nothing of more
        step = 1.0 if self._slow_start else 1.0 / self.limit
        level = self._congested_level
        if level is not None:
            if self.limit >= level + 1:
                self._congested_level, self._probe = None, PROBE  # probed past it: that congestion has passed
            elif self.limit + 1.0 >= level:
                step /= self._probe  # the next slot is the one that was too many: try it, slowly
        self.limit = min(float(self.limits.ceiling), self.limit + step)
        self.highest = max(self.highest, self.limit)

    def _slow_for(self, size, latency: float) -> bool:
        fastest = self._fastest.get(size)
        if fastest is None or latency < fastest:
            self._fastest[size] = latency
            return False
        self._fastest[size] = fastest * LATENCY_DRIFT
        return latency > LATENCY_TOLERANCE * fastest

    def state(self) -> dict:
        """What it did: the limit now, the highest it reached, the most in flight at once, the cuts; the send
        rate a 429 engaged (requests per second now, None if none did) and its cuts."""
        rate = self.pacer.rate(time.monotonic())
        return {"limit": self.allowed, "highest": int(self.highest), "peak": self.peak, "cuts": self.cuts,
                "rate": None if rate is None else round(rate, 1), "rate_cuts": self.pacer.cuts}


class Limiters:
    """The limits of a process's endpoints, by identity (never a key); made on first use."""

    def __init__(self):
        self._limits: dict = {}
        self._lock = threading.Lock()

    def get(self, identity, limits: tuple = (), pinned: int | None = None) -> AdaptiveLimit:
        """The limit of the endpoint `identity`, made from its model's (floor, ceiling, start), or fixed at
        `pinned`."""
        key = (identity, pinned)
        limit = self._limits.get(key)
        if limit is None:
            with self._lock:
                limit = self._limits.get(key)
                if limit is None:
                    bounds = Limits(pinned, pinned, pinned) if pinned else Limits(*limits)
                    limit = self._limits[key] = AdaptiveLimit(bounds, fixed=pinned is not None)
        return limit
