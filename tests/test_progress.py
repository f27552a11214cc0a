"""Progress: one carriage-return line on a terminal, nothing elsewhere, time from an injected clock."""

import io

from kd_ref.plumbing.progress import Progress, format_duration


class FakeTty(io.StringIO):
    def isatty(self):
        return True


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def screen(text: str) -> list[str]:
    """What a terminal shows: each line as its last carriage-return segment, trailing blanks cut."""
    return [line.split("\r")[-1].rstrip() for line in text.split("\n")]


def test_format_duration():
    assert format_duration(0) == "0:00:00"
    assert format_duration(65.9) == "0:01:05"
    assert format_duration(3 * 3600 + 61) == "3:01:01"


def test_line_shows_step_fields_rate_and_eta():
    stream, clock = FakeTty(), FakeClock()
    bar = Progress(total=100, desc="distil", stream=stream, clock=clock)
    clock.now += 10.0
    bar.update(20, loss=0.43125, phase=3)
    # 20 steps in 10 s: 2.0 it/s, 80 steps left: 40 s
    assert screen(stream.getvalue()) == ["distil  20/100  loss 0.431  phase 3  2.0 it/s  ETA 0:00:40"]


def test_redraws_are_throttled_and_the_last_state_is_drawn_on_close():
    stream, clock = FakeTty(), FakeClock()
    bar = Progress(total=10, desc="d", stream=stream, min_interval=0.5, clock=clock)
    for _ in range(4):  # 0.1 s apart: only the first update is drawn
        clock.now += 0.1
        bar.update(loss=1.0)
    assert stream.getvalue().count("\r") == 1
    clock.now += 0.5
    bar.update(loss=0.5)
    assert stream.getvalue().count("\r") == 2
    bar.close()
    bar.close()
    assert stream.getvalue().endswith("\n") and stream.getvalue().count("\n") == 1
    assert screen(stream.getvalue())[0].startswith("d  5/10  loss 0.5  ")


def test_shorter_line_blanks_out_the_longer_one():
    stream, clock = FakeTty(), FakeClock()
    bar = Progress(total=10, desc="d", stream=stream, min_interval=0.0, clock=clock)
    clock.now += 1.0
    bar.update(1, note="a long message")
    clock.now += 1.0
    bar.update(1, note="x")
    first, second = stream.getvalue().split("\r")[1:]
    assert len(second) >= len(first.rstrip())
    assert screen(stream.getvalue())[0].startswith("d  2/10  note x  ")


def test_reaching_total_is_always_drawn_and_before_any_time_no_rate():
    stream, clock = FakeTty(), FakeClock()
    with Progress(total=3, desc="d", stream=stream, min_interval=60.0, clock=clock) as bar:
        bar.update()
        assert screen(stream.getvalue()) == ["d  1/3  ? it/s  ETA ?"]
        clock.now += 1.0
        bar.update(2)  # throttled by time, but the last step is drawn anyway
        assert screen(stream.getvalue()) == ["d  3/3  3.0 it/s  ETA 0:00:00"]
    assert stream.getvalue().endswith("\n")


def test_silent_when_not_a_terminal():
    stream, clock = io.StringIO(), FakeClock()
    with Progress(total=5, desc="d", stream=stream, min_interval=0.0, clock=clock) as bar:
        for _ in range(5):
            clock.now += 1.0
            bar.update(loss=0.1)
    assert stream.getvalue() == ""
    assert bar.step == 5
