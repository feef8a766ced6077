#!/usr/bin/env bash
# Regenerate every committed results folder from scratch: each folder's runs go into a store
# of its own, results/stores/FOLDER.db (git-ignored), trained with the default --jobs (every
# usable core, one torch thread per run), then `harness report` writes the folder from that
# store alone. `results/regenerate.sh FOLDER...` redoes some; finished runs are skipped, so an
# interrupted regeneration continues where it stopped. Then `uv run harness docs build`
# renders the numbers of README.md and results/*.md from the folders' CSV files.
set -euo pipefail
cd "$(dirname "$0")/.."

declare -A RUNS=(  # folder -> the `harness run` arguments that fill it
    [mnist_modes]="suites/mnist_modes.yaml"
    [mnist_modes_converged]="suites/mnist_modes.yaml -p converged"
    [toy_modes]="suites/toy_modes.yaml"
    [sngan_settings_mnist]="suites/sngan_settings_mnist.yaml"
    [sngan_settings]="suites/sngan_settings.yaml"
    [toy_sweep]="suites/toy_sweep.yaml"
    [repro/pacgan_grid]="suites/pacgan_grid.yaml"
    [repro/pacgan_grid_curve]="suites/pacgan_grid.yaml -p curve"
    [repro/pacgan_grid_lipschitz]="suites/pacgan_grid.yaml -p lipschitz"
    [repro/stacked_mnist]="suites/stacked_mnist.yaml"
    [repro/stacked_mnist_curve]="suites/stacked_mnist.yaml -p curve --only bce,pacdcgan2"
    [repro/stacked_mnist_paper_nets]="suites/stacked_mnist.yaml -p paper_nets --only bce,pacdcgan2"
    [repro/wgan_gp_8gaussians]="suites/wgan_gp_8gaussians.yaml"
    [repro/wgan_gp_25gaussians]="suites/wgan_gp_25gaussians.yaml"
    [repro/wgan_gp_swissroll]="suites/wgan_gp_swissroll.yaml"
    [repro/wgan_gp_deep_critic]="suites/wgan_gp_deep_critic.yaml"
    [repro/wgan_gp_fixed_8gaussians]="suites/wgan_gp_8gaussians.yaml -p fixed_generator"
    [repro/wgan_gp_fixed_25gaussians]="suites/wgan_gp_25gaussians.yaml -p fixed_generator"
    [repro/wgan_gp_fixed_swissroll]="suites/wgan_gp_swissroll.yaml -p fixed_generator"
)
ORDER=(mnist_modes mnist_modes_converged toy_modes sngan_settings_mnist sngan_settings toy_sweep repro/pacgan_grid
    repro/pacgan_grid_curve repro/pacgan_grid_lipschitz repro/stacked_mnist
    repro/stacked_mnist_curve repro/stacked_mnist_paper_nets repro/wgan_gp_8gaussians
    repro/wgan_gp_25gaussians repro/wgan_gp_swissroll repro/wgan_gp_deep_critic
    repro/wgan_gp_fixed_8gaussians repro/wgan_gp_fixed_25gaussians repro/wgan_gp_fixed_swissroll)

for folder in "${@:-${ORDER[@]}}"; do
    args=${RUNS[$folder]:?"no folder $folder in results/regenerate.sh"}
    store="sqlite:///results/stores/${folder//\//-}.db"
    mkdir -p results/stores
    read -r suite rest <<<"$args"
    echo "== $folder: harness run $args"
    # shellcheck disable=SC2086  # the arguments are words
    uv run harness run $args --tracking-uri "$store"
    uv run harness report "$suite" --tracking-uri "$store" --out "results/$folder"
done
