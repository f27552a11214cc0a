"""Progress: one carriage-return line on a terminal, plain lines now and then elsewhere, time from an
injected clock."""

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


def test_run_eta_counts_the_parts_still_to_come():
    stream, clock = FakeTty(), FakeClock()
    bar = Progress(total=100, desc="episode 1 of 4", stream=stream, clock=clock, after=300)
    clock.now += 10.0
    bar.update(20)
    # 2.0 it/s: 80 steps of this part (40 s), then 300 more (150 s)
    assert screen(stream.getvalue()) == ["episode 1 of 4  20/100  2.0 it/s  ETA 0:00:40  run ETA 0:03:10"]


def test_a_file_gets_a_plain_line_every_interval_at_milestones_and_at_the_end():
    stream, clock = io.StringIO(), FakeClock()
    with Progress(total=10, desc="d", stream=stream, clock=clock, plain_interval=30.0) as bar:
        for step in range(1, 11):
            clock.now += 7.0
            bar.update(loss=0.1, milestone=step == 3)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    # step 3: a milestone (21 s); step 7: 49 s, 28 s after it, not yet; step 8: 56 s, 35 s after; then the end
    assert [line.split()[1] for line in lines] == ["3/10", "8/10", "10/10"], lines
    assert lines[-1] == "d  10/10  loss 0.1  0.1 it/s  ETA 0:00:00"


def test_a_milestone_at_the_end_is_not_written_twice():
    stream, clock = io.StringIO(), FakeClock()
    with Progress(total=2, desc="d", stream=stream, clock=clock) as bar:
        clock.now += 1.0
        bar.update(2, milestone=True)
    assert len(stream.getvalue().splitlines()) == 1
