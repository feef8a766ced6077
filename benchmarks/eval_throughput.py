"""Time one evaluation of N MNIST samples: coverage, FID + KID + PR, Lipschitz diagnostics.

    uv run python benchmarks/eval_throughput.py --samples 10000 [--device auto]

Prints a markdown table; the first FID call also computes and caches the real statistics, so
it is timed separately from a warm call.
"""

from __future__ import annotations

import argparse
import time

import torch

from harness.builtins.metrics import Fidelity, Lipschitz, ModeCoverage
from harness.evaluation.context import Context as EvalContext
from harness.parts import Samples
from harness.run.loading import load_suite
from harness.run.trainer import resolve_device


def timed(fn) -> tuple[float, dict]:
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    suite, registry = load_suite("suites/mnist_modes.yaml", profile="smoke")
    spec = suite.runs[0].model_copy(
        update={"eval": suite.runs[0].eval.model_copy(update={"samples": args.samples})}
    )
    dataset = registry.create("dataset", "mnist", {})
    arch = registry.create("architecture", "dcgan28", {"width": 64})
    generator, critic = arch.build(64, (1, 28, 28), "score")
    train, test = dataset.load("train"), dataset.load("test")
    # the reference set is the training split repeated up to N (the embedded set has 4,000)
    reps = -(-args.samples // len(train.x))
    reference = train.x.repeat(reps, 1, 1, 1)[: args.samples].to(device)
    ctx = EvalContext(
        spec,
        dataset,
        generator.to(device),
        critic.to(device),
        None,
        Samples(test.x.to(device), test.y.to(device)),
        device,
        train=reference,
    )
    rows = []
    seconds, _ = timed(ctx.evaluator)
    rows.append(("evaluator (load the frozen weights, check their hash)", seconds))
    seconds, ctx.fake = timed(lambda: ctx.generate(args.samples))
    rows.append((f"generate {args.samples} samples (dcgan28 width 64)", seconds))
    coverage, fidelity, lipschitz = ModeCoverage(), Fidelity(), Lipschitz()
    rows.append(("mode coverage (evaluator predictions)", timed(lambda: coverage.evaluate(ctx))[0]))
    rows.append(
        (
            "FID + KID + PR, first call (real stats + floor)",
            timed(lambda: fidelity.evaluate(ctx))[0],
        )
    )
    warm, values = timed(lambda: fidelity.evaluate(ctx))
    rows.append(("FID + KID + PR, warm (real stats cached)", warm))
    rows.append(("Lipschitz diagnostics (512 samples)", timed(lambda: lipschitz.evaluate(ctx))[0]))
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, samples: {args.samples}")
    print("| step | seconds |\n|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} |")
    print(f"\nfid_mnist of an untrained generator: {values['fid_mnist']:.1f}")


if __name__ == "__main__":
    main()
