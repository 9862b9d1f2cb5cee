"""ProgressReporter: throttling, monotonicity, the final 100%, phases and milestone logs."""

from __future__ import annotations

import logging

import pytest

from mcp_tasks_redis.engine.progress import ProgressReporter

Sent = tuple[float, float | None, str | None]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Sent] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.calls.append((progress, total, message))

    @property
    def values(self) -> list[float]:
        return [progress for progress, _, _ in self.calls]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sink() -> Recorder:
    return Recorder()


@pytest.fixture
def reporter(sink: Recorder, clock: FakeClock) -> ProgressReporter:
    return ProgressReporter(sink, min_interval=0.1, min_delta=1.0, clock=clock, task_id="task-42")


# -- throttling ------------------------------------------------------------------------


async def test_first_update_is_sent_with_total_100(reporter: ProgressReporter, sink: Recorder) -> None:
    await reporter.update(0.2, "starting")
    assert sink.calls == [(0.2, 100.0, "starting")]


async def test_small_steps_within_the_interval_are_dropped(
    reporter: ProgressReporter, sink: Recorder
) -> None:
    for step in range(10):
        await reporter.update(10 + step * 0.05)
    assert sink.values == [10]
    assert reporter.sent == 1
    assert reporter.current == pytest.approx(10.45)


async def test_a_step_of_min_delta_is_sent_immediately(reporter: ProgressReporter, sink: Recorder) -> None:
    await reporter.update(10)
    await reporter.update(10.5)
    await reporter.update(11.0)
    assert sink.values == [10, 11.0]


async def test_a_small_step_is_sent_once_the_interval_has_passed(
    reporter: ProgressReporter, sink: Recorder, clock: FakeClock
) -> None:
    await reporter.update(10)
    clock.advance(0.05)
    await reporter.update(10.2)
    clock.advance(0.07)
    await reporter.update(10.3)
    assert sink.values == [10, 10.3]


async def test_an_unchanged_value_is_not_resent_even_after_the_interval(
    reporter: ProgressReporter, sink: Recorder, clock: FakeClock
) -> None:
    await reporter.update(10, "working")
    clock.advance(5)
    await reporter.update(10, "working")
    await reporter.update(10)
    assert sink.calls == [(10, 100.0, "working")]


async def test_a_new_message_at_the_same_value_waits_for_the_interval(
    reporter: ProgressReporter, sink: Recorder, clock: FakeClock
) -> None:
    await reporter.update(10, "a")
    await reporter.update(10, "b")
    clock.advance(0.1)
    await reporter.update(10, "c")
    assert sink.calls == [(10, 100.0, "a"), (10, 100.0, "c")]


async def test_flush_sends_the_latest_throttled_value(reporter: ProgressReporter, sink: Recorder) -> None:
    await reporter.update(10)
    await reporter.update(10.4, "almost")
    await reporter.flush()
    await reporter.flush()
    assert sink.calls == [(10, 100.0, None), (10.4, 100.0, "almost")]


# -- monotonicity and bounds -----------------------------------------------------------


async def test_progress_never_goes_backwards(
    reporter: ProgressReporter, sink: Recorder, clock: FakeClock
) -> None:
    await reporter.update(50)
    clock.advance(1)
    await reporter.update(40, "late update")
    assert sink.values == [50]
    assert reporter.last_sent == 50
    assert reporter.current == 50


async def test_values_are_clamped_to_0_and_100(reporter: ProgressReporter, sink: Recorder) -> None:
    await reporter.update(-5)
    await reporter.update(250)
    assert sink.values == [0, 100]


async def test_nan_is_rejected(reporter: ProgressReporter) -> None:
    with pytest.raises(ValueError, match="NaN"):
        await reporter.update(float("nan"))


async def test_100_is_sent_even_inside_the_throttle_window(
    reporter: ProgressReporter, sink: Recorder
) -> None:
    await reporter.update(99.5)
    await reporter.update(100, "done")
    assert sink.calls[-1] == (100, 100.0, "done")
    assert reporter.finished


async def test_100_is_sent_exactly_once(reporter: ProgressReporter, sink: Recorder, clock: FakeClock) -> None:
    await reporter.update(100)
    clock.advance(1)
    await reporter.update(100, "again")
    await reporter.finish("finished")
    await reporter.flush()
    assert sink.values == [100]


async def test_finish_reports_100_with_its_message(reporter: ProgressReporter, sink: Recorder) -> None:
    await reporter.update(30)
    await reporter.finish("all done")
    assert sink.calls[-1] == (100, 100.0, "all done")
    assert reporter.sent == 2


# -- phases ----------------------------------------------------------------------------


async def test_phase_without_plan_or_weight_takes_the_whole_range(
    reporter: ProgressReporter, sink: Recorder
) -> None:
    async with reporter.phase("scan", 4) as phase:
        await phase.update_item(1)
        await phase.update_item(2)
    assert sink.calls == [(25, 100.0, "scan: 1/4"), (50, 100.0, "scan: 2/4"), (100, 100.0, "scan: 4/4")]


async def test_weighted_phases_take_consecutive_slices_and_the_rest_goes_last(
    reporter: ProgressReporter, sink: Recorder
) -> None:
    async with reporter.phase("download", 10, weight=30) as download:
        await download.update_item(5)
    async with reporter.phase("parse", 2) as parse:
        await parse.advance()
    assert sink.calls == [
        (15, 100.0, "download: 5/10"),
        (30, 100.0, "download: 10/10"),
        (65, 100.0, "parse: 1/2"),
        (100, 100.0, "parse: 2/2"),
    ]


async def test_a_plan_scales_relative_weights_onto_0_to_100(
    reporter: ProgressReporter, sink: Recorder
) -> None:
    reporter.plan({"download": 1, "parse": 3})
    async with reporter.phase("download", 2) as download:
        await download.update_item(1, "halfway there")
    async with reporter.phase("parse", 3) as parse:
        await parse.advance(3)
    assert sink.calls == [
        (12.5, 100.0, "halfway there"),
        (25, 100.0, "download: 2/2"),
        (100, 100.0, "parse: 3/3"),
    ]


async def test_a_phase_missing_from_the_plan_is_an_error(reporter: ProgressReporter) -> None:
    reporter.plan({"download": 30, "parse": 70})
    with pytest.raises(ValueError, match="'upload' is not in the progress plan"):
        async with reporter.phase("upload", 1):
            pass


async def test_the_phase_end_is_reported_even_inside_the_throttle_window(
    reporter: ProgressReporter, sink: Recorder
) -> None:
    async with reporter.phase("tiny", 100, weight=0.5) as phase:
        await phase.update_item(50)
    assert sink.values == [0.25, 0.5]


async def test_a_failing_phase_does_not_report_its_end(reporter: ProgressReporter, sink: Recorder) -> None:
    async def fetch() -> None:
        async with reporter.phase("fetch", 10, weight=50) as phase:
            await phase.update_item(2)
            raise RuntimeError("network down")

    with pytest.raises(RuntimeError, match="network down"):
        await fetch()
    assert sink.values == [10]


async def test_an_empty_phase_counts_as_complete(reporter: ProgressReporter, sink: Recorder) -> None:
    async with reporter.phase("nothing", 0, weight=20):
        pass
    assert sink.values == [20]


# -- milestone logs --------------------------------------------------------------------


async def test_milestones_are_logged_once_with_the_task_id(
    reporter: ProgressReporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_tasks_redis.progress")
    await reporter.update(30)
    await reporter.update(40)
    await reporter.update(80)
    await reporter.finish()
    messages = [r.getMessage() for r in caplog.records if r.name == "mcp_tasks_redis.progress"]
    assert messages == [
        "task task-42 progress reached 25%",
        "task task-42 progress reached 50%",
        "task task-42 progress reached 75%",
        "task task-42 progress reached 100%",
    ]
    assert all(r.levelno == logging.INFO for r in caplog.records)


async def test_throttled_values_do_not_trigger_milestones(
    reporter: ProgressReporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mcp_tasks_redis.progress")
    await reporter.update(24.5)
    await reporter.update(25.2)  # dropped: less than min_delta and within min_interval
    assert caplog.records == []
