"""How fast requests may start to one endpoint: a send rate learned from its 429s, for the APIs that limit
requests per second or per minute rather than requests in flight (OpenAI's RPM, most gateways).

A limit of requests in flight cannot hold a rate: under a per-second limit, the same number in flight is fine
or too many depending on how long answers take, and a burst (a slow start, slots held for a Retry-After and
freed together) trips a sliding window that the average would not. So, as the AWS SDKs' "adaptive" retry mode
does (a token bucket whose rate follows CUBIC), the endpoint's `AdaptiveLimit` also spaces its sends once the
endpoint has refused one:

- off until the first 429: an endpoint that never refuses is never slowed;
- a 429 sets the rate to `BETA` times the rate requests were being sent at when it came (the sends of the last
  second, never more than the rate in force), the rate the endpoint just refused; at most once a second, as
  the server's window keeps counting the sends made before a cut for a while after it (each 429 of the burst
  that cut takes one request off the rate refused);
- the rate then grows back in time along a cubic curve (`C`): quickly while far below the refused rate, flat
  around it (probed rarely), faster again past it, as the endpoint's limit may have moved (a quota raised);
- sends are spaced 1/rate apart (a bucket of one token), and no more than the rate's worth go out in any
  second (what was sent before a cut, refused or not, is waited out): no burst, which a sliding window refuses;
- a cut re-spaces the sends already scheduled at the old rate (`AdaptiveLimit` has them ask again), so a queue
  built at the refused rate does not go out at it.

Used under its `AdaptiveLimit`'s lock; times are `time.monotonic()` seconds.
"""
from __future__ import annotations

from collections import deque

BETA = 0.9  # the rate after a 429, as a share of the rate that was refused (counted, so cut less than
# a limit in flight is)
C = 0.4  # the cubic's scale, in requests per second per second cubed (CUBIC's and the AWS SDKs' constant)
MIN_RATE = 0.5  # requests per second, at least: a rate is never cut to nothing
WINDOW = 1.0  # seconds over which the rate requests are sent at is counted
MIN_SPAN = 0.1  # seconds: a rate is never counted over less


class Pacer:
    """A send rate for one endpoint, engaged by its first 429 (`refused`); `reserve(now)` books the next send
    and returns how long it waits."""

    def __init__(self):
        self.engaged = False
        self.refused_rate = 0.0  # the send rate of the last 429 (CUBIC's W_max)
        self.cuts = 0
        self._cut_at = 0.0
        self._k = 0.0  # seconds after a cut at which the rate is back at the refused rate
        self._start = 0.0  # the rate just after the last cut
        self._span = WINDOW  # seconds over which the sends of the last cut were counted
        self._next = 0.0  # the earliest time the next send may start
        self._sent: deque[float] = deque()  # when the sends of the last WINDOW seconds start(ed)

    def rate(self, now: float) -> float | None:
        """Requests per second allowed at `now` (None: not engaged)."""
        if not self.engaged:
            return None
        return max(MIN_RATE, C * (now - self._cut_at - self._k) ** 3 + self.refused_rate)

    def cut_within(self, now: float) -> bool:
        """Whether the rate was cut less than a WINDOW ago (a 429 now is of the burst that cut it)."""
        return self.engaged and now - self._cut_at < WINDOW

    def reserve(self, now: float) -> float:
        """Book a send: the seconds it waits before it starts (0 while not engaged)."""
        self._trim(now)
        start = now
        if self.engaged:
            start = max(now, self._next)
            rate = self.rate(start)
            per_window = max(1, int(rate * WINDOW))
            if len(self._sent) >= per_window:  # and no more than the rate's worth in any WINDOW: after a burst,
                start = max(start, self._sent[-per_window] + WINDOW)  # wait until it has aged out of it
                rate = self.rate(start)
            self._next = start + 1.0 / rate
        self._sent.append(start)
        return start - now

    def refused(self, now: float, before_cut: bool = False) -> bool:
        """A 429: the rate is cut to BETA times the rate that was refused; whether it was cut. Not within a WINDOW
        after a cut: the server's window still counts the sends made before it, and refuses what is sent after it
        until they age out. A 429 then on a send made `before_cut` was one request too many of the burst that
        cut: the rate refused is one less."""
        if self.cut_within(now):
            if before_cut:
                self._set(self.refused_rate - 1.0 / self._span, self._start - 1.0 / WINDOW)
            return False
        self._sent = deque(t for t in self._sent if now - WINDOW < t <= now)  # the later ones are booked again
        # Sending for less than a WINDOW (a start, or after a pause), the rate is known only between the sends
        # over the whole window (if the server counts per second) and over the time they took (if it counts
        # requests in flight): the rate starts from the first and grows toward the second.
        self._span = min(WINDOW, max(MIN_SPAN, now - self._sent[0])) if self._sent else WINDOW
        current = self.rate(now)
        cap = float("inf") if current is None else current
        self.engaged, self.cuts, self._cut_at = True, self.cuts + 1, now
        self._set(min(len(self._sent) / self._span, cap), BETA * min(len(self._sent) / WINDOW, cap))
        self._next = now + 1.0 / self.rate(now)  # what was booked beyond is booked again (AdaptiveLimit._paced)
        return True

    def _set(self, refused_rate: float, start: float) -> None:
        """The rate refused (CUBIC's W_max), the rate just after the cut, and so the time the rate takes to
        grow back (CUBIC's K)."""
        self.refused_rate = max(MIN_RATE, refused_rate)
        self._start = min(self.refused_rate, max(MIN_RATE, start))
        self._k = ((self.refused_rate - self._start) / C) ** (1.0 / 3.0)

    def _trim(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - WINDOW:
            self._sent.popleft()
