"""What a server starts with: the thread plan (workers × threads ≤ cores, a core left to each
event loop), the token's sources, and the open-host rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from stillhouse.errors import StillhouseError
from stillhouse.serve.settings import ServeSettings, is_loopback, plan_threads, read_token


@pytest.mark.parametrize(
    "cores, workers, threads",
    [(1, 1, 1), (2, 1, 1), (4, 1, 3), (16, 1, 15), (2, 2, 1), (8, 2, 3), (4, 4, 1)],
)
def test_the_default_plan_leaves_a_core_to_each_event_loop(cores, workers, threads) -> None:
    plan = plan_threads(workers, None, cores)
    assert plan.threads == threads and plan.workers * plan.threads <= max(cores, workers)


def test_explicit_threads_may_use_the_spare_core_but_no_more() -> None:
    assert plan_threads(1, 2, 2).threads == 2
    assert "left for the event loop" not in plan_threads(1, 2, 2).describe()
    assert "1 left for the event loop" in plan_threads(1, None, 2).describe()
    with pytest.raises(StillhouseError) as refused:
        plan_threads(2, 2, 2)
    assert refused.value.code == "E807" and "workers × threads ≤ cores" in refused.value.message


def test_the_token_comes_from_the_file_else_the_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("  from-file \n", encoding="utf-8")
    environment = {"STILLHOUSE_TOKEN": "from-environment"}
    assert read_token(token_file, environment) == "from-file"
    assert read_token(None, environment) == "from-environment"
    assert read_token(None, {}) is None


def test_an_open_host_needs_a_token_or_insecure() -> None:
    with pytest.raises(StillhouseError) as refused:
        ServeSettings(host="0.0.0.0").check()
    assert refused.value.code == "E802"
    assert ServeSettings(host="0.0.0.0", insecure=True).check().insecure
    assert ServeSettings(host="0.0.0.0", token="t").check().token == "t"
    assert ServeSettings(host="localhost").check().host == "localhost"
    assert is_loopback("127.0.0.2") and is_loopback("::1") and not is_loopback("10.1.2.3")


@pytest.mark.parametrize(
    "cores, workers, threads, lanes",
    [
        (2, 1, None, 2),
        (2, 1, 2, 1),
        (1, 1, None, 1),
        (8, 1, None, 1),
        (8, 2, 1, 4),
        (4, 4, None, 1),
    ],
)
def test_model_systems_get_as_many_batch_lanes_as_the_cores_hold(
    cores, workers, threads, lanes
) -> None:
    plan = plan_threads(workers, threads, cores)
    assert plan.lanes == lanes and plan.workers * plan.lanes * plan.threads <= max(cores, workers)
    said = plan.describe()
    assert (f"run {lanes} batches at once" in said) == (lanes > 1)


def test_two_lanes_run_two_batches_at_once_and_one_lane_never_does() -> None:
    import asyncio
    import threading
    import time

    from stillhouse.serve.batching import Batcher

    def overlap(lanes: int) -> int:
        running, most, lock = [0], [0], threading.Lock()

        def run_batch(jobs):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.05)  # a model call that leaves the GIL
            with lock:
                running[0] -= 1
            return [list(job.texts) for job in jobs]

        async def main() -> None:
            batcher = Batcher("m", run_batch, max_batch=2, max_wait_s=0, lanes=lanes)
            futures = [f for n in range(8) for f in batcher.submit([f"t{n}"], 1, 0.0)]
            answers = await asyncio.gather(*futures)
            await batcher.close()
            assert answers == [[f"t{n}"] for n in range(8)]  # each job its own answer

        asyncio.run(main())
        return most[0]

    assert overlap(1) == 1
    assert overlap(2) == 2
