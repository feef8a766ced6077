"""`harness run` end to end at its default, one worker process per usable core: the same end
table as --jobs 1, and the start line says how many runs train at once."""

import os
import platform
import subprocess
import sys

import torch
from conftest import TOY_SUITE
from test_cli import child_runs, harness

THREADS_PLUGIN = '''
import os

import torch

import harness
from harness.builtins.datasets import Ring8


class CountingRing8(Ring8):
    """ring8 that notes which process loads it and with how many torch threads."""

    def load(self, split, data_dir=None):
        with open(os.environ["THREADS_LOG"], "a") as log:
            log.write(f"{os.getpid()} {torch.get_num_threads()}\\n")
        return super().load(split, data_dir)


@harness.hookimpl
def register_datasets(register):
    register("counting_ring8", CountingRing8)
'''


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The end table's rows by strategy, without sec_per_step (the last column)."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) > 2 and cells[0] in ("wgan-gp", "bce"):
            rows[cells[0]] = cells[1:-1]
    return rows


VOLATILE = {"eval_seconds", "train_seconds", "sec_per_step", "peak_memory_mb"}


def test_the_default_uses_every_usable_core_and_gives_the_numbers_of_jobs_one(
    tmp_path, write_suite, monkeypatch
):
    (tmp_path / "counting_ring8.py").write_text(THREADS_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers inherit sys.path
    log = tmp_path / "threads.log"
    monkeypatch.setenv("THREADS_LOG", str(log))
    monkeypatch.setenv("TTY_COMPATIBLE", "0")  # progress as lines, whatever runs pytest
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})  # two usable cores
    text = TOY_SUITE.replace("{name: ring8, n: 2000}", "{name: counting_ring8, n: 2000}")
    suite = write_suite(text + "plugins: [counting_ring8]\n")
    outputs, finals = {}, {}
    for jobs in ("1", None):  # --jobs 1, then the default
        if jobs is None:
            monkeypatch.delenv("HARNESS_JOBS")
        (tmp_path / f"jobs{jobs}").mkdir()
        store = f"sqlite:///{tmp_path / f'jobs{jobs}' / 'mlflow.db'}"
        log.write_text("")
        result = harness("run", suite, *(["--jobs", jobs] if jobs else []), "--tracking-uri", store)
        assert result.exit_code == 0, result.output
        assert "sec_per_step" in result.stdout
        outputs[jobs] = table_rows(result.stdout)
        _, _, kids = child_runs(store, "tiny")
        assert sorted(k.data.tags["status"] for k in kids) == ["finished"] * 4
        finals[jobs] = {
            (k.data.tags["strategy"], k.data.tags["seed"]): {
                m: v for m, v in k.data.metrics.items() if m not in VOLATILE
            }
            for k in kids
        }
        for kid in kids:  # provenance, logged by every run wherever it trains
            params = kid.data.params
            assert params["torch_threads"] == "1" and params["device"] == "cpu"
            assert params["torch_version"] == str(torch.__version__)
            assert params["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
            assert params["python_version"] == platform.python_version()
            assert params["eval_protocol"] == "gauss-3sigma-v1:n200"
        loads = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
        pids = {pid for pid, _ in loads}
        if jobs == "1":
            assert pids == {os.getpid()} and "; 1 at a time" in result.stdout
            continue
        # two worker processes, one torch thread each, saying so and reporting only their end
        assert 0 < len(pids) <= 2 and os.getpid() not in pids
        assert {threads for _, threads in loads} == {1}
        out = result.stdout
        assert "training 4 of 4 runs: new strategy (4); 2 at a time" in out
        assert "queued 4 runs, 2 at a time; each reports when it ends" in out
        assert "start " not in out  # nothing claims a run started while it waits in the queue
        for name in ("wgan-gp seed 0", "bce seed 1"):
            lines = out.splitlines()
            assert any(f"end {name}: finished after " in x and " of training" in x for x in lines)
    assert outputs["1"].keys() == {"wgan-gp", "bce"}
    assert outputs[None] == outputs["1"]
    assert finals[None] == finals["1"]  # one thread per run either way: identical numbers


def test_a_stopping_worker_keeps_finaliser_noise_off_the_terminal():
    """SIGTERM in a worker interrupts its run wherever it is; an exception a finaliser raises
    while the run unwinds (matplotlib's, mid-figure, when a disk filled) printed a traceback
    under the one-line error. After SIGTERM such exceptions are dropped."""
    script = """
import signal
from harness.run import executors

class Noisy:
    def __del__(self):
        raise RuntimeError("finaliser noise")

executors._busy = True
try:
    executors._on_sigterm(signal.SIGTERM, None)
except KeyboardInterrupt:
    pass
noisy = Noisy()
del noisy
print("done")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.strip() == "done" and done.stderr == "", done.stderr


AHEAD_JOBS = """
import os

warmed = []


def warm_up():
    warmed.append(os.getpid())


def failing_warm_up():
    raise RuntimeError("no warm-up here")


def job(n):
    return os.getpid(), list(warmed), n * n
"""


def test_workers_started_ahead_take_the_jobs_warm_and_are_stopped_when_not_taken(
    tmp_path, monkeypatch
):
    """`harness run` starts its workers while the store opens: the executor then uses those
    processes, each warmed up once before its first job; a warm-up that fails leaves them
    usable; workers nobody takes (another number, or leaving early) are stopped."""
    from harness.run import executors

    (tmp_path / "ahead_jobs.py").write_text(AHEAD_JOBS)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers inherit sys.path
    import ahead_jobs

    def outcomes(workers: int) -> list:
        return [get() for _, get in executors.local_processes(ahead_jobs.job, [1, 2, 3], workers)]

    with executors.workers_ahead(2, ahead_jobs.warm_up):
        started = dict(executors._ahead[2]._processes)
        done = outcomes(2)
    assert sorted(n for _, _, n in done) == [1, 4, 9]
    assert {pid for pid, _, _ in done} <= set(started)
    assert all(warmed == [pid] for pid, warmed, _ in done)
    with executors.workers_ahead(2, ahead_jobs.failing_warm_up):
        assert sorted(n for _, _, n in outcomes(2)) == [1, 4, 9]
    for leave in ("another number", "early"):
        with executors.workers_ahead(2, ahead_jobs.warm_up):
            unused = list(executors._ahead[2]._processes.values())
            if leave == "another number":
                pids = {pid for pid, _, _ in outcomes(1)}
                assert not pids & {p.pid for p in unused}
                assert not any(p.is_alive() for p in unused)  # stopped as the others start
        assert not any(p.is_alive() for p in unused) and not executors._ahead
