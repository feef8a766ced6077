"""Every path on a CUDA GPU (marker ``cuda``; skipped without one): training and resume, GP's
double backward under bf16 autocast, the evaluator, FID and coverage against the CPU, ``--jobs``
processes sharing one GPU, and Ray packing four runs on one GPU with ``--gpus-per-run 0.25``.

    python -m pytest -m cuda tests/test_cuda.py                  # on the GPU machine
    HARNESS_TEST_DEVICE=cpu uv run pytest -m cuda tests/test_cuda.py   # the same bodies on CPU

Tolerances: CUDA runs are not bit-reproducible (cuDNN picks kernels by timing, convolutions run
in TF32 by default, some backward kernels accumulate with atomics), so where the CPU needs
equality these tests allow rel 1e-3 on training metrics after a few steps and 1 % on FID/KID
(TF32 features). On ``HARNESS_TEST_DEVICE=cpu`` the same comparisons hold exactly.
"""

import os
import threading

import pytest
import torch
from conftest import TOY_SUITE
from test_resume import InterruptAt

from harness.builtins.constraints import GradientPenalty
from harness.builtins.metrics import Fidelity, ModeCoverage
from harness.evaluation.context import Context as EvalContext
from harness.parts import Samples
from harness.registry import Registry
from harness.run.executors import usable_cores
from harness.run.loading import load_suite
from harness.run.runner import RunSettings, run_suite
from harness.run.store import Store as Tracker
from harness.run.trainer import autocast, train

DEVICE = torch.device(os.environ.get("HARNESS_TEST_DEVICE", "cuda"))
CPU = torch.device("cpu")
EXACT = DEVICE.type == "cpu"
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        DEVICE.type == "cuda" and not torch.cuda.is_available(),
        reason="no CUDA GPU (HARNESS_TEST_DEVICE=cpu runs these bodies on the CPU)",
    ),
]
VOLATILE = {"eval_seconds", "train_seconds", "sec_per_step", "peak_memory_mb"}
RESUME_SUITE = (
    TOY_SUITE.replace("steps: 6", "steps: 12")
    .replace("log_every: 3", "log_every: 2")
    .replace("every: 3, samples", "every: 4, samples")
    .replace("seeds: [0, 1]", "seeds: [0]")
)


def close(a: float, b: float, rel: float = 1e-3, abs_: float = 1e-5) -> bool:
    return a == b if EXACT else b == pytest.approx(a, rel=rel, abs=abs_)


def finals(outcomes) -> dict:
    return {
        (o.spec.strategy, o.spec.seed): {k: v for k, v in o.metrics.items() if k not in VOLATILE}
        for o in outcomes
    }


def assert_same_finals(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].keys() == b[key].keys()
        for metric, value in a[key].items():
            assert close(value, b[key][metric]), (key, metric, value, b[key][metric])


def child_runs(tracker: Tracker, experiment: str) -> list:
    exp = tracker.client.get_experiment_by_name(experiment).experiment_id
    runs = tracker.client.search_runs([exp])
    return [r for r in runs if r.data.tags.get("harness.kind") == "run"]


def test_training_and_resume_on_the_device(tmp_path, write_suite):
    suite, registry = load_suite(write_suite(RESUME_SUITE))
    straight = Tracker(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}")
    first = run_suite(
        suite, registry, straight, RunSettings(device=str(DEVICE), checkpoint_every=2)
    )
    assert [o.status for o in first] == ["finished", "finished"]

    resumed = Tracker(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}")
    with pytest.raises(KeyboardInterrupt):
        run_suite(
            suite,
            registry,
            resumed,
            RunSettings(device=str(DEVICE), checkpoint_every=2),
            progress=InterruptAt("bce", 10),
        )
    path = resumed.checkpoint_dir / suite.runs[1].run_key / "checkpoint.pt"
    assert 0 < torch.load(path, map_location="cpu", weights_only=False)["step"] < 10
    again = run_suite(suite, registry, resumed, RunSettings(device=str(DEVICE), checkpoint_every=2))
    assert [o.status for o in again] == ["skipped", "finished"]
    assert_same_finals(finals(first), {**finals(again), **finals(first[:1])})
    kids = child_runs(resumed, "tiny")
    assert len(kids) == 2  # the resumed run continued its own MLflow run
    assert all(r.data.params["device"].startswith(str(DEVICE)) for r in kids)


def test_gradient_penalty_double_backward_under_bf16_autocast():
    registry = Registry()
    arch = registry.create("architecture", "dcgan28", {"width": 8})
    torch.manual_seed(0)
    _, critic = arch.build(16, (1, 28, 28), "score")
    critic = critic.to(DEVICE)
    real = torch.rand(32, 1, 28, 28, device=DEVICE) * 2 - 1
    fake = torch.rand(32, 1, 28, 28, device=DEVICE) * 2 - 1
    out = {}
    for precision in ("fp32", "bf16"):
        critic.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same interpolates
        with autocast(DEVICE, precision):  # as in the trainer
            value = GradientPenalty(weight=10.0).penalty(critic, real, fake)
        value.backward()  # the double backward, outside autocast
        grads = torch.cat([p.grad.flatten() for p in critic.parameters() if p.grad is not None])
        assert value.dtype == torch.float32 and torch.isfinite(value)
        assert grads.dtype == torch.float32 and torch.isfinite(grads).all() and grads.any()
        out[precision] = value.item(), grads
    assert out["bf16"][0] == pytest.approx(out["fp32"][0], rel=5e-2)  # 8 bits of mantissa
    cosine = torch.nn.functional.cosine_similarity(out["bf16"][1], out["fp32"][1], dim=0)
    assert cosine > 0.95

    suite, registry = load_suite("suites/mnist_modes.yaml", profile="smoke", precision="bf16")
    spec = next(s for s in suite.runs if s.strategy == "wgan-gp")
    result = train(spec, registry=registry, device=DEVICE)
    assert result.status == "finished" and result.steps == spec.train.steps
    assert all(torch.tensor(v).isfinite() for v in result.metrics.values())


def test_evaluator_fid_and_coverage_on_the_device_equal_the_cpu():
    suite, registry = load_suite("suites/mnist_modes.yaml", profile="smoke")
    spec = suite.runs[0].model_copy(
        update={"eval": suite.runs[0].eval.model_copy(update={"samples": 1000})}
    )
    dataset = registry.create("dataset", "mnist", {})
    train_x, test = dataset.load("train").x, dataset.load("test")
    torch.manual_seed(0)  # real test digits, blurred by noise: clear classes, a nonzero FID
    fake = (test.x[:1000] + 0.3 * torch.randn_like(test.x[:1000])).clamp(-1, 1)
    generator, critic = registry.create("architecture", "dcgan28", {"width": 4}).build(
        64, (1, 28, 28), "score"
    )
    values = {}
    for device in (CPU, DEVICE):
        ctx = EvalContext(
            spec, dataset, generator.to(device), critic.to(device), None,
            Samples(test.x.to(device), test.y.to(device)), device, train=train_x[:1000].to(device),
        )  # fmt: skip
        ctx.fake = fake.to(device)
        logits = ctx.evaluator().net(test.x[:500].to(device)).float().cpu()
        values[device.type] = (
            logits,
            ModeCoverage().evaluate(ctx),
            Fidelity().evaluate(ctx),
        )
    (l_cpu, cov_cpu, fid_cpu), (l_dev, cov_dev, fid_dev) = values["cpu"], values[DEVICE.type]
    torch.testing.assert_close(l_dev, l_cpu, rtol=0 if EXACT else 1e-2, atol=0 if EXACT else 2e-2)
    assert (l_dev.argmax(1) == l_cpu.argmax(1)).float().mean() >= 0.998
    assert cov_dev.keys() == cov_cpu.keys() and fid_dev.keys() == fid_cpu.keys()
    for key, value in cov_cpu.items():  # class counts: at most a borderline sample flips
        assert close(value, cov_dev[key], rel=1e-2, abs_=2e-3), (key, value, cov_dev[key])
    for key, value in fid_cpu.items():
        assert close(value, fid_dev[key], rel=1e-2, abs_=1e-2), (key, value, fid_dev[key])
    assert fid_cpu["fid_mnist"] > 1  # a real difference to measure, not 0 == 0


def test_jobs_processes_share_one_device(tmp_path, write_suite):
    suite, registry = load_suite(write_suite(TOY_SUITE))
    alone = RunSettings(device="cpu", stack="off")  # runs, not stacks, share the device here
    one = run_suite(suite, registry, Tracker(f"sqlite:///{tmp_path / 'a' / 'm.db'}"), alone)
    tracker = Tracker(f"sqlite:///{tmp_path / 'b' / 'm.db'}")
    jobs = min(4, usable_cores())  # four on the lent machine; what a dry run's CPU has
    settings = RunSettings(device=str(DEVICE), jobs=jobs, stack="off")
    many = run_suite(suite, registry, tracker, settings)
    assert [o.status for o in many] == ["finished"] * 4
    kids = child_runs(tracker, "tiny")
    assert all(r.data.params["device"].startswith(str(DEVICE)) for r in kids)
    if EXACT:  # four processes on one device train exactly what one CPU process does
        assert finals(one) == finals(many)
    else:  # the same runs on the GPU: close to the CPU's after 6 steps, not bit-equal
        for key, metrics in finals(one).items():
            for metric, value in metrics.items():
                got = finals(many)[key][metric]
                assert got == pytest.approx(value, rel=5e-2, abs=5e-3), (key, metric)


def test_ray_packs_four_runs_on_one_gpu(tmp_path, write_suite):
    ray = pytest.importorskip("ray")
    # one GPU in the cluster (on the CPU dry run, a declared one): 0.25 each fits four at once
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, logging_level="WARNING")
    free_gpu, done = [], threading.Event()

    def watch():  # what Ray has left of the GPU while the suite runs
        while not done.wait(0.2):
            free_gpu.append(ray.available_resources().get("GPU", 0.0))

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        suite, registry = load_suite(write_suite(TOY_SUITE.replace("steps: 6", "steps: 100")))
        tracker = Tracker(f"sqlite:///{tmp_path / 'm.db'}")
        watcher.start()
        outcomes = run_suite(
            suite,
            registry,
            tracker,
            RunSettings(device=str(DEVICE), executor="ray", gpus_per_run=0.25, stack="off"),
        )
    finally:
        done.set()
        watcher.join()
        ray.shutdown()
    assert [o.status for o in outcomes] == ["finished"] * 4
    assert min(free_gpu) == 0.0  # four tasks of 0.25 held the one GPU at the same time
    kids = child_runs(tracker, "tiny")
    assert all(r.data.params["device"].startswith(str(DEVICE)) for r in kids)
