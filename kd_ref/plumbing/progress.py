"""A one-line progress display for terminals, the part of tqdm that kd-ref needs.

    with Progress(total=500, desc="distil") as bar:
        for batch in batches:
            ...
            bar.update(loss=loss.item())

draws, rewriting the same line with a carriage return,

    distil  120/500  loss 0.431  12.3 it/s  ETA 0:00:30

Only a terminal gets it: when the stream is a file or a pipe (a log, CI) nothing
is written, so logs hold only what log.jsonl and the printed tables say.
"""

import sys
import time


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
                 clock=time.monotonic):
        self.total, self.desc = total, desc
        self.stream = sys.stderr if stream is None else stream
        self.enabled = self.stream.isatty()
        self.min_interval, self.clock = min_interval, clock
        self.step, self.fields = 0, {}
        self.start = clock()
        self.last_draw = None  # clock time of the last redraw, None before the first
        self.width = 0  # length of the line on screen, to blank out a longer old one
        self.closed = False

    def line(self) -> str:
        parts = [self.desc, f"{self.step}/{self.total}"]
        parts += [f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.fields.items()]
        elapsed = self.clock() - self.start
        if elapsed > 0 and self.step > 0:
            rate = self.step / elapsed
            parts += [f"{rate:.1f} it/s", f"ETA {format_duration(max(self.total - self.step, 0) / rate)}"]
        else:
            parts += ["? it/s", "ETA ?"]
        return "  ".join(parts)

    def draw(self) -> None:
        text = self.line()
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = len(text)
        self.last_draw = self.clock()

    def update(self, n: int = 1, **fields) -> None:
        self.step += n
        self.fields.update(fields)
        if not self.enabled:
            return
        due = self.last_draw is None or self.clock() - self.last_draw >= self.min_interval
        if due or self.step >= self.total:
            self.draw()

    def close(self) -> None:
        """Draw the final state and end the line; later calls do nothing."""
        if self.enabled and not self.closed:
            self.draw()
            self.stream.write("\n")
            self.stream.flush()
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
