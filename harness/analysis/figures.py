"""The report's figures, each a :class:`harness.analysis.plotting.Figure`: metric curves over
steps with seed bands, mode coverage and critic gradient norms per strategy, the last sample
grid, the critic's value surface and its per-layer gradients and weights per strategy.
Histories and files come from the store."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis import plotting
from harness.analysis.plotting import Figure
from harness.analysis.tables import OK
from harness.core.errors import HarnessError
from harness.evaluation import layers
from harness.evaluation.surface import ARTIFACT_DIR
from harness.run.store import Store

CURVES = (  # metrics plotted over steps, when present (a few: one history call per run each)
    "fid_mnist",
    "modes_covered",
    "kl_to_uniform",
    "reverse_kl",
    "hq_fraction",
    "w1_exact",
    "loss_critic",
    "grad_norm_generator",
)
COVERAGE = ("modes_covered", "hq_fraction", "reverse_kl", "kl_to_uniform")
GRAD_SETS = ("interp", "real", "fake")  # grad_norm_<set>_{mean,p95,max,frac_above_1}
GRAD_STATS = ("mean", "p95", "max")


def status_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs per strategy and status (finished, diverged, failed, running, ...), with a total."""
    order = list(dict.fromkeys(frame["strategy"]))
    counts = pd.crosstab(frame["strategy"], frame["status"]).reindex(order, fill_value=0)
    first = [s for s in ("finished", "skipped", "diverged", "failed") if s in counts]
    counts = counts[first + sorted(set(counts) - set(first))]
    counts.columns.name = None
    counts["total"] = counts.sum(axis=1)
    return counts


def strategy_colors(frame: pd.DataFrame) -> dict[str, tuple]:
    """One colour per strategy, the same in every figure."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {s: cmap(i % 10) for i, s in enumerate(dict.fromkeys(frame["strategy"]))}


def metric_histories(store: Store, runs: pd.DataFrame, metrics) -> pd.DataFrame:
    """Long frame (strategy, seed, metric, step, value): one history read per run and metric
    it has among ``metrics``, never for every metric a run logged."""
    rows = []
    for run in runs.to_dict("records"):
        for metric in [m for m in metrics if pd.notna(run.get(m))]:
            for step, value in store.metric_history(run["run_id"], metric):
                rows.append((run["strategy"], run["seed"], metric, step, value))
    return pd.DataFrame(rows, columns=["strategy", "seed", "metric", "step", "value"])


def curves_figure(histories: pd.DataFrame, colors: dict) -> Figure | None:
    """A panel per metric: per strategy the mean over seeds against step, min–max band."""
    if histories.empty:
        return None
    metrics = [m for m in CURVES if m in set(histories["metric"])]
    fig, axes = plotting.grid(len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        data = histories[histories["metric"] == metric]
        for strategy, group in data.groupby("strategy", sort=False):
            # a value logged twice at one step (a resumed window) counts once: the last
            by_seed = group.pivot_table(
                index="step", columns="seed", values="value", aggfunc="last"
            )
            steps, color = by_seed.index.to_numpy(), colors[strategy]
            marker = "." if len(steps) < 30 else None
            ax.plot(steps, by_seed.mean(axis=1), color=color, lw=1.5, marker=marker)
            if by_seed.shape[1] > 1:
                low, high = by_seed.min(axis=1), by_seed.max(axis=1)
                ax.fill_between(steps, low, high, color=color, alpha=0.2, lw=0)
        if plotting.spread(data["value"]):
            ax.set_yscale("log")
        plotting.style(ax, metric)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("step", fontsize=8)
    plotting.legend(fig, colors, list(dict.fromkeys(histories["strategy"])))
    return Figure(
        "curves",
        "Metrics over training steps",
        "Line: mean over usable seeds; band: min–max over seeds. Evaluation metrics exist at "
        "evaluation steps only.",
        plotting.png(fig),
    )


def _bars(ax, usable: pd.DataFrame, metrics: list[str], colors: dict) -> np.ndarray:
    """Grouped bars: a group per metric, a bar per strategy (mean over seeds), min–max
    whiskers and a dot per seed. Returns the bars' x positions, groups × strategies."""
    strategies = [s for s in colors if s in set(usable["strategy"])]
    width = 0.8 / len(strategies)
    x = (
        np.arange(len(metrics))[:, None]
        + (np.arange(len(strategies)) - (len(strategies) - 1) / 2) * width
    )
    for j, strategy in enumerate(strategies):
        values = usable.loc[usable["strategy"] == strategy, metrics]
        mean, low, high = values.mean(), values.min(), values.max()
        yerr = np.vstack([mean - low, high - mean])
        ax.bar(x[:, j], mean, width, yerr=yerr, capsize=2, color=colors[strategy])
        for xi, metric in zip(x[:, j], metrics, strict=True):
            seeds = values[metric].dropna()
            ax.scatter(np.full(len(seeds), xi), seeds, s=8, color="k", zorder=3)
    return x


def coverage_figure(usable: pd.DataFrame, colors: dict) -> Figure | None:
    """Final mode coverage (and quality share, KL) per strategy, over seeds."""
    metrics = [m for m in COVERAGE if plotting.present(usable, m)]
    if not metrics:
        return None
    fig, axes = plotting.grid(len(metrics), width=3.4, height=3.0, cols=4)
    for ax, metric in zip(axes, metrics, strict=True):
        x = _bars(ax, usable, [metric], colors)
        ax.set_xticks(
            x[0], [s for s in colors if s in set(usable["strategy"])], rotation=30, ha="right"
        )
        plotting.style(ax, metric)
    return Figure(
        "coverage",
        "Mode coverage at the end of training",
        "Bar: mean over usable seeds; whiskers: min–max over seeds; dots: seeds.",
        plotting.png(fig),
    )


def gradient_figure(usable: pd.DataFrame, colors: dict) -> Figure | None:
    """Critic gradient norms at the last evaluation: mean / p95 / max per strategy for
    interpolates, real and generated samples, and the share of norms above 1."""
    sets = [
        g
        for g in GRAD_SETS
        if all(plotting.present(usable, f"grad_norm_{g}_{s}") for s in GRAD_STATS)
    ]
    if not sets:
        return None
    fig, axes = plotting.grid(len(sets) + 1, width=3.6, height=3.0, cols=4)
    for ax, name in zip(axes, sets, strict=False):
        metrics = [f"grad_norm_{name}_{s}" for s in GRAD_STATS]
        x = _bars(ax, usable, metrics, colors)
        ax.axhline(1.0, color="k", ls="--", lw=0.8)
        if plotting.spread(usable[metrics].to_numpy().ravel()):
            ax.set_yscale("log")
        ax.set_xticks(x.mean(axis=1), GRAD_STATS)
        plotting.style(ax, f"‖∇f‖ on {name} samples")
    shares = [
        f"grad_norm_{g}_frac_above_1" for g in sets if f"grad_norm_{g}_frac_above_1" in usable
    ]
    if shares:
        x = _bars(axes[-1], usable, shares, colors)
        axes[-1].set_xticks(x.mean(axis=1), [m.split("_")[2] for m in shares])
        axes[-1].set_ylim(0, 1.05)
    plotting.style(axes[-1], "share of ‖∇f‖ > 1")
    plotting.legend(fig, colors, [s for s in colors if s in set(usable["strategy"])])
    return Figure(
        "gradient_norms",
        "Critic gradient norms at the last evaluation",
        "Norm of the critic's input gradient on interpolates (where the gradient penalty acts), "
        "real and generated samples: mean, 95th percentile and max over the evaluation batch; "
        "the dashed line is the 1-Lipschitz target. Bar: mean over usable seeds; whiskers: "
        "min–max over seeds; dots: seeds.",
        plotting.png(fig),
    )


def last_files(
    store: Store, frame: pd.DataFrame, folder: str, suffix: str, dest: Path, read=None
) -> list[tuple[pd.Series, int, Any]]:
    """Per strategy, the last file ending in ``suffix`` in the ``folder`` artifacts of one run
    (usable runs first, lowest seed), downloaded into ``dest``: (run row, step, file), or
    ``read(file)`` in place of the file (a run whose file cannot be read is passed over)."""
    found = []
    ranked = frame.assign(bad=~frame["status"].isin(OK)).sort_values(["bad", "seed"])
    for _, group in ranked.groupby("strategy", sort=False):
        for _, run in group.iterrows():
            try:
                path, step = store.last_artifact(run["run_id"], folder, suffix, dest)
                content = read(path) if read else path
            except (LookupError, HarnessError, OSError, ValueError):
                continue
            found.append((run, step, content))
            break
    order = list(dict.fromkeys(frame["strategy"]))
    return sorted(found, key=lambda item: order.index(item[0]["strategy"]))


def last_samples(
    store: Store, frame: pd.DataFrame, dest: Path
) -> list[tuple[pd.Series, int, Path]]:
    """Per strategy, the last ``samples/`` PNG of one run (usable runs first, lowest seed),
    downloaded into ``dest``: (run row, step, file)."""
    return last_files(store, frame, "samples", ".png", dest)


def samples_figure(store: Store, frame: pd.DataFrame, colors: dict) -> Figure | None:
    """The sample grids side by side, one per strategy."""
    pyplot = plotting.plt()
    with tempfile.TemporaryDirectory() as tmp:
        found = last_samples(store, frame, Path(tmp))
        if not found:
            return None
        fig, axes = plotting.grid(len(found), width=3.6, height=3.9, cols=4)
        for ax, (run, step, path) in zip(axes, found, strict=True):
            ax.imshow(pyplot.imread(path))
            status = "" if run["status"] in OK else f", {run['status']}"
            ax.set_title(
                f"{run['strategy']}\nseed {run['seed']}, step {step}{status}",
                fontsize=9,
                color=colors[run["strategy"]],
            )
            ax.axis("off")
    return Figure(
        "samples",
        "Samples at the last evaluation",
        "One run per strategy: the lowest usable seed (else a diverged, failed or unfinished "
        "run that logged samples, its status marked), as logged under the run's samples/.",
        plotting.png(fig),
    )


def last_surfaces(
    store: Store, frame: pd.DataFrame, dest: Path
) -> list[tuple[pd.Series, int, dict]]:
    """Per strategy, the last value surface of one run (usable runs first, lowest seed):
    (run row, step, arrays)."""

    return last_files(store, frame, ARTIFACT_DIR, ".npz", dest, read=_arrays)


def surface_figure(store: Store, frame: pd.DataFrame, colors: dict) -> Figure | None:
    """Contours of each strategy's critic over the plane, real points grey, generated ones in
    the strategy's colour; None when no run logged a surface."""
    with tempfile.TemporaryDirectory() as tmp:
        found = last_surfaces(store, frame, Path(tmp))
    if not found:
        return None
    fig, axes = plotting.grid(len(found), width=4.0, height=4.0, cols=3)
    for ax, (run, step, s) in zip(axes, found, strict=True):
        contours = ax.contourf(s["xs"], s["ys"], s["values"], levels=20, cmap="viridis")
        ax.contour(s["xs"], s["ys"], s["values"], levels=20, colors="k", linewidths=0.3)
        fig.colorbar(contours, ax=ax, shrink=0.8)
        ax.scatter(s["real"][:, 0], s["real"][:, 1], s=6, c="white", marker="+", lw=0.6)
        color = colors.get(run["strategy"], "tab:orange")
        ax.scatter(s["fake"][:, 0], s["fake"][:, 1], s=3, color=color, marker="+", lw=0.6)
        ax.set_xlim(s["xs"][0], s["xs"][-1])
        ax.set_ylim(s["ys"][0], s["ys"][-1])
        ax.set_aspect("equal")
        pack = int(s["pack"])
        status = "" if run["status"] in OK else f", {run['status']}"
        packed = f", f(x, …, x) of {pack}" if pack > 1 else ""
        title = f"{run['strategy']}\nseed {run['seed']}, step {step}{status}{packed}"
        ax.set_title(title, fontsize=9)
    return Figure(
        "surface",
        "Critic value surfaces",
        "Contours of the critic f over the plane at the last evaluation (one run per strategy: "
        "the lowest usable seed), real samples white, generated ones in the strategy's "
        "colour. A packing critic is evaluated on packs of copies of one point.",
        plotting.png(fig),
    )


def layers_figure(store: Store, frame: pd.DataFrame, colors: dict) -> Figure | None:
    """WGAN-GP's Figure 1b–c: the norm of the critic loss's gradient per weight layer (mean
    over usable seeds, min–max band), and each strategy's weight histogram at its last
    evaluation; None when no run measured ``layer_gradients``."""
    usable = frame[frame["status"].isin(OK)]
    columns = sorted(c for c in usable.columns if c.startswith("grad_norm_layer_"))
    columns = [c for c in columns if plotting.present(usable, c)]
    if not columns:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        found = last_files(store, frame, layers.ARTIFACT_DIR, ".npz", Path(tmp), read=_arrays)
    fig, axes = plotting.grid(1 + len(found), width=4.2, height=3.2, cols=3)
    depth = np.arange(1, len(columns) + 1)
    for strategy, group in usable.groupby("strategy", sort=False):
        norms = group[columns].to_numpy(dtype=float)
        color = colors.get(strategy)
        axes[0].plot(depth, np.nanmean(norms, axis=0), color=color, marker="o", ms=3)
        if len(norms) > 1:
            low, high = np.nanmin(norms, axis=0), np.nanmax(norms, axis=0)
            axes[0].fill_between(depth, low, high, color=color, alpha=0.2)
    if plotting.spread(usable[columns].to_numpy().ravel()):
        axes[0].set_yscale("log")
    axes[0].set_xlabel("critic layer (input side first)")
    plotting.style(axes[0], "‖∂L/∂W‖ per layer")
    for ax, (run, step, arrays) in zip(axes[1:], found, strict=False):
        edges, counts = arrays["edges"], arrays["counts"]
        ax.bar(
            edges[:-1],
            counts,
            width=np.diff(edges),
            align="edge",
            color=colors.get(run["strategy"]),
        )
        ax.set_yscale("log")
        plotting.style(ax, f"{run['strategy']} weights\nseed {run['seed']}, step {step}")
    plotting.legend(fig, colors, [s for s in colors if s in set(usable["strategy"])])
    return Figure(
        "layers",
        "Critic gradients per layer and weight histograms",
        "Left: the norm of the gradient of the critic's loss (without penalty) with respect to "
        "each weight layer at the last evaluation, input side first (mean over usable seeds, "
        "band: min–max); clipping makes it vanish or explode with depth (WGAN-GP Figure 1b). "
        "Then each strategy's critic weights (one run: the lowest usable seed), log counts: "
        "clipping piles them up at ±c (Figure 1c).",
        plotting.png(fig),
    )


def _arrays(path: Path) -> dict:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}
