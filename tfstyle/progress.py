"""Progress of a long loop on stderr, with an ETA from measured step times."""

import sys
import time


class Progress:
    """Reports `done` of `total` steps: one line rewritten in place on a terminal, about 20 lines in a log.

    The first step of a loop includes tracing and warm-up and can take many times a later one, so the estimate of
    the time left is made from the steps after it (the first report has none).
    """

    def __init__(self, total: int, *, stream=None):
        self.total = total
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.started = time.perf_counter()
        self.first = self.every = self.warm = None  # set by the first report (a resumed loop starts part-way)

    def __call__(self, done: int, text: str) -> None:
        """Reports `done` of `total` steps with a short status text."""
        now = time.perf_counter()
        if self.warm is None:
            self.first = done - 1
            self.every = 1 if self.interactive else max(1, (self.total - self.first) // 20)
            self.warm = (done, now)  # (steps done, time) once the first step is over
        if (done - self.first) % self.every and done != self.total:
            return
        warm_done, warm_time = self.warm
        if done > warm_done and done < self.total:
            remaining = f", ~{(now - warm_time) / (done - warm_done) * (self.total - done):.0f} s left"
        else:
            remaining = ""
        line = f"step {done}/{self.total}  {text}  {now - self.started:.1f} s{remaining}"
        if self.interactive:
            self.stream.write("\r" + line + ("\n" if done == self.total else "\x1b[K"))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
