"""--precision bf16: autocast forward passes, a gradient penalty that stays right under it, and
precision in the run key (fp32, the default, leaves the keys of earlier runs unchanged)."""

import math

import pytest
import torch
from conftest import TOY_SUITE
from torch import nn

from harness.builtins.constraints import GradientPenalty
from harness.core.errors import SuiteError
from harness.run.loading import load_suite
from harness.run.trainer import TRAIN_KEYS, MetricsSink, autocast, train

CPU = torch.device("cpu")
# keys of TOY_SUITE's runs without code identity, as made before the precision option existed;
# harness 0.1.0 gave fe580c71fbd8ea59, bbfa04b5ad1aa13d, 875661bc51636ddb, 653437c221404e60
# and 0.2.0 fd3ac56a275eb90a, 56587139eb489ee7, b79dcf99fe6e7a84, e48e52aa62ca5c4e for the same
# configs: only the version in the key moved, with the deliberate bumps to 0.2.0 and 0.3.0
KEYS_BEFORE = ["8263b94c1b84a3f3", "781ffeaace45772a", "f95b74673b97aa43", "833f961bd427b003"]


def penalty_and_grads(critic: nn.Module, precision: str, real, fake):
    critic.zero_grad(set_to_none=True)
    with autocast(CPU, precision):  # as in the trainer: the penalty is computed inside autocast
        value = GradientPenalty(weight=10.0).penalty(critic, real, fake)
    value.backward()  # the double backward, outside autocast, as in the trainer
    grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in critic.parameters()]
    return value.detach(), grads


def test_gradient_penalty_of_a_linear_critic_under_bf16_matches_the_closed_form():
    torch.manual_seed(0)
    critic = nn.Linear(8, 1)
    real, fake = torch.randn(64, 8), torch.randn(64, 8)
    w = critic.weight.detach().flatten()
    norm = w.norm()
    expected = 10 * (norm - 1) ** 2  # ∇x c(x) = w everywhere
    expected_grad = 20 * (norm - 1) * w / norm
    for precision in ("fp32", "bf16"):
        torch.manual_seed(1)
        value, (grad_w, grad_b) = penalty_and_grads(critic, precision, real, fake)
        tol = 1e-5 if precision == "fp32" else 2e-2  # bf16 keeps 8 bits of mantissa
        assert value.dtype == torch.float32
        assert value.item() == pytest.approx(expected.item(), rel=tol)
        assert grad_w.dtype == torch.float32
        torch.testing.assert_close(grad_w.flatten(), expected_grad, rtol=tol, atol=tol * 1e-1)
        assert not grad_b.any()  # the bias does not move ∇x c


def test_gradient_penalty_under_bf16_agrees_with_fp32_on_a_small_mlp():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(2, 32), nn.LeakyReLU(0.2), nn.Linear(32, 32), nn.Tanh())
    critic.append(nn.Linear(32, 1))
    real, fake = torch.randn(256, 2), torch.randn(256, 2) + 1
    torch.manual_seed(1)
    value32, grads32 = penalty_and_grads(critic, "fp32", real, fake)
    torch.manual_seed(1)  # the same interpolates
    value16, grads16 = penalty_and_grads(critic, "bf16", real, fake)
    assert value16.item() == pytest.approx(value32.item(), rel=3e-2)
    for g16, g32 in zip(grads16, grads32, strict=True):
        assert g16.dtype == torch.float32 and torch.isfinite(g16).all()
        if not g32.any():  # the last bias does not move ∇x c
            assert not g16.any()
            continue
        # compare each parameter's gradient as a vector: direction and size
        cos = torch.nn.functional.cosine_similarity(g16.flatten(), g32.flatten(), dim=0)
        assert cos > 0.99
        assert g16.norm().item() == pytest.approx(g32.norm().item(), rel=5e-2)


def test_precision_is_in_the_run_key_and_fp32_keeps_the_earlier_keys(write_suite):
    path = write_suite(TOY_SUITE)
    fp32, _ = load_suite(path)
    # Keys now also hash the parts' code; without that identity, fp32 keys are the old ones.
    assert [r.model_copy(update={"identity": {}}).run_key for r in fp32.runs] == KEYS_BEFORE
    assert all(r.train.precision == "fp32" for r in fp32.runs)
    bf16, _ = load_suite(path, precision="bf16")
    assert all(r.train.precision == "bf16" for r in bf16.runs)
    assert not {r.run_key for r in bf16.runs} & set(KEYS_BEFORE)
    in_yaml, _ = load_suite(
        write_suite(TOY_SUITE.replace("log_every: 3", "log_every: 3, precision: bf16"), "b.yaml")
    )
    assert [r.run_key for r in in_yaml.runs] == [r.run_key for r in bf16.runs]
    with pytest.raises(SuiteError) as info:
        load_suite(path, precision="fp16")
    assert info.value.field == "train.precision"


class Losses(MetricsSink):
    def __init__(self):
        self.values = {}

    def log(self, values, step):
        self.values.update({(k, step): v for k, v in values.items() if k in TRAIN_KEYS})


def test_bf16_training_runs_and_differs_from_fp32_only_by_rounding(write_suite):
    path = write_suite(TOY_SUITE.replace("seeds: [0, 1]", "seeds: [0]"))
    fp32, registry = load_suite(path)
    bf16, _ = load_suite(path, precision="bf16")
    for a, b in zip(fp32.runs, bf16.runs, strict=True):
        sa, sb = Losses(), Losses()
        train(a, registry=registry, device="cpu", sink=sa)
        rb = train(b, registry=registry, device="cpu", sink=sb)
        assert rb.status == "finished" and rb.steps == b.train.steps
        assert all(math.isfinite(v) for v in rb.metrics.values())
        assert sa.values.keys() == sb.values.keys()
        assert sa.values != sb.values, "bf16 changed nothing: autocast is not active"
        for key, value in sa.values.items():
            assert sb.values[key] == pytest.approx(value, rel=0.1, abs=0.05), key
