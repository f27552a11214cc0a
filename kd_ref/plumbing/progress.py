"""A one-line progress display for terminals, the part of tqdm that kd-ref needs.

    with Progress(total=500, desc="distil") as bar:
        for batch in batches:
            ...
            bar.update(loss=loss.item())

draws, rewriting the same line with a carriage return,

    episode 2 of 4  120/500  loss 0.431  12.3 it/s  ETA 0:00:30  run ETA 0:04:10

("run ETA": this part and the parts still to come after it, `after` steps at the same
rate: a KSM run's later episodes and its final run). When the stream is a file or a
pipe (a log, CI), the same line is written as a plain line of its own every
`plain_interval` seconds, at every milestone (run.py: a phase end) and at the end,
so that a redirected run still says how far it is. Under torchrun only rank 0 writes.
Each update also lets the run's thread count follow the runs beside it (threads.rebalance):
every long loop updates a Progress once a step.
"""

import sys
import time

from kd_ref.plumbing import distributed
from kd_ref.plumbing.threads import rebalance


def format_duration(seconds: float) -> str:
    """H:MM:SS, seconds rounded down."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Progress:
    """Counts steps towards `total`; redraws at most every `min_interval` seconds of `clock`.

    Rate is the average since construction (steady, unlike a last-step rate); the
    ETA is the remaining steps at that rate. Fields given to update() (e.g.
    loss=0.43) are shown with their latest value, floats to 3 significant digits.
    `stream` None means sys.stderr at construction time.
    """

    def __init__(self, total: int, desc: str, stream=None, min_interval: float = 0.5,
                 clock=time.monotonic, after: int = 0, plain_interval: float = 30.0):
        self.total, self.desc, self.after = total, desc, after
        self.stream = sys.stderr if stream is None else stream
        self.tty = self.stream.isatty()
        self.silent = not distributed.is_main()  # one voice, as for run.py's prints
        self.min_interval, self.plain_interval, self.clock = min_interval, plain_interval, clock
        self.step, self.fields = 0, {}
        self.start = clock()
        self.last_draw = None  # clock time of the last redraw (plain: line), None before the first
        self.drawn_step = None  # the step it showed
        self.width = 0  # length of the line on screen, to blank out a longer old one
        self.closed = False

    def line(self) -> str:
        parts = [self.desc, f"{self.step}/{self.total}"]
        parts += [f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.fields.items()]
        elapsed = self.clock() - self.start
        if elapsed > 0 and self.step > 0:
            rate = self.step / elapsed
            left = max(self.total - self.step, 0)
            parts += [f"{rate:.1f} it/s", f"ETA {format_duration(left / rate)}"]
            if self.after:
                parts.append(f"run ETA {format_duration((left + self.after) / rate)}")
        else:
            parts += ["? it/s", "ETA ?"]
        return "  ".join(parts)

    def draw(self) -> None:
        if self.silent:
            return
        text = self.line()
        if self.tty:
            self.stream.write("\r" + text.ljust(self.width))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.width, self.drawn_step = len(text), self.step
        self.last_draw = self.clock()

    def update(self, n: int = 1, milestone: bool = False, **fields) -> None:
        """n more steps; fields shown with their latest value. milestone (a phase end): a plain
        stream gets a line now."""
        self.step += n
        self.fields.update(fields)
        rebalance()
        if self.tty:
            due = self.last_draw is None or self.clock() - self.last_draw >= self.min_interval
            if due or self.step >= self.total:
                self.draw()
        elif milestone or self.clock() - (self.start if self.last_draw is None else self.last_draw) >= self.plain_interval:
            self.draw()

    def close(self) -> None:
        """Draw the final state (a terminal: and end the line); later calls do nothing."""
        if not self.closed:
            if self.tty and not self.silent:
                self.draw()
                self.stream.write("\n")
                self.stream.flush()
            elif self.drawn_step != self.step:  # a milestone may have written this state already
                self.draw()
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
