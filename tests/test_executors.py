"""`harness run --jobs N` end to end: the same end table as --jobs 1, runs in separate worker
processes that split the machine's cores."""

import os

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


def test_jobs_two_end_to_end_prints_the_table_of_jobs_one(tmp_path, write_suite, monkeypatch):
    (tmp_path / "counting_ring8.py").write_text(THREADS_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers inherit sys.path
    log = tmp_path / "threads.log"
    monkeypatch.setenv("THREADS_LOG", str(log))
    text = TOY_SUITE.replace("{name: ring8, n: 2000}", "{name: counting_ring8, n: 2000}")
    suite = write_suite(text + "plugins: [counting_ring8]\n")
    outputs = {}
    for jobs in (1, 2):
        store = f"sqlite:///{tmp_path / f'jobs{jobs}' / 'mlflow.db'}"
        log.write_text("")
        result = harness("run", suite, "--jobs", jobs, "--tracking-uri", store)
        assert result.exit_code == 0, result.output
        assert "sec_per_step" in result.stdout
        outputs[jobs] = table_rows(result.stdout)
        _, _, kids = child_runs(store, "tiny")
        assert sorted(k.data.tags["status"] for k in kids) == ["finished"] * 4
        loads = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
        pids = {pid for pid, _ in loads}
        if jobs == 1:
            assert pids == {os.getpid()}
        else:  # two worker processes, each with half the cores
            assert 0 < len(pids) <= 2 and os.getpid() not in pids
            assert {threads for _, threads in loads} == {max(1, (os.cpu_count() or 1) // 2)}
    assert outputs[1].keys() == {"wgan-gp", "bce"}
    assert outputs[2] == outputs[1]
