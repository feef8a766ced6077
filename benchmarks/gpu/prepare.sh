#!/usr/bin/env bash
# Run HERE (with the registries), before a device call: fetch the wheels that the GPU image lacks
# into benchmarks/gpu/wheels/ (git-ignored), for CPython 3.12 on manylinux x86_64, plus a wheel of
# the project itself, and check that they and the working tree fit the device tool's 64 MiB a call.
#
#   bash benchmarks/gpu/prepare.sh [--verify]
#
# The image (benchmarks/gpu/image-packages.txt, from the device tool's KINDS.md) has torch,
# torchvision, numpy, scipy, pandas, pluggy, typer, rich, matplotlib, pyyaml, requests, pytest...
# and no network. Carried: mlflow-skinny (MlflowClient and the SQLite store are all the harness
# uses; full mlflow adds the UI server) with sqlalchemy + alembic for the SQLite store,
# torch-fidelity, POT, mlxtend, pydantic, and whatever of their own needs the image lacks.
# POT is pinned to 0.9.6.post1: its wheel is 1.5 MB, 0.9.7.post1's (the lock's) is 33 MB.
# Ray (79 MB wheel) cannot travel within the budget: the Ray-on-GPU test skips there.
#
# --verify: install the carried wheels into a fresh Python 3.12 venv (uv's or pyenv's; PY312=path) with
# the image's packages they need from the registry (not torch: too big), and import them.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=benchmarks/gpu
WHEELS=$HERE/wheels
BUDGET=$((64 * 1024 * 1024))
ROOTS=(mlflow-skinny==3.17.2 sqlalchemy==2.1.9 alembic==1.20.1 torch-fidelity==0.4.0
    pot==0.9.6.post1 mlxtend==0.25.0 pydantic==2.14.4)

mkdir -p "$WHEELS"
rm -f "$WHEELS"/harness-*.whl
echo "resolving the closure of ${ROOTS[*]} over the image's packages"
uv run --quiet --with pip python $HERE/closure.py --dest "$WHEELS" "${ROOTS[@]}" \
    >/dev/null 2> >(grep -v '^WARNING: Location' >&2)
uv build --quiet --wheel --out-dir "$WHEELS" . 2>&1 | grep -v '^Building' || true
ls "$WHEELS"/harness-*-py3-none-any.whl >/dev/null

echo
printf '%10s  %s\n' bytes wheel
for w in "$WHEELS"/*.whl; do printf '%10d  %s\n' "$(stat -c %s "$w")" "$(basename "$w")"; done
wheels=$(du -cb "$WHEELS"/*.whl | tail -1 | cut -f1)
tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total=$((wheels + tree))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "wheels $(mib "$wheels") + working tree $(mib "$tree") = $(mib "$total") of $(mib $BUDGET)"
if ((total > BUDGET)); then
    echo "error: over the device tool's 64 MiB a call: carry less (or untrack large files)" >&2
    exit 1
fi

if [[ "${1:-}" == "--verify" ]]; then
    py=${PY312:-$(uv python find 3.12 2>/dev/null || ls "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12 2>/dev/null | tail -1)}
    [[ -x "$py" ]] || { echo "error: no Python 3.12 here (uv python install 3.12, or PY312=path)" >&2; exit 1; }
    venv=$(mktemp -d)/venv
    echo "verifying in a fresh venv of $($py --version) at $venv"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --no-index --no-deps --ignore-requires-python "$WHEELS"/*.whl
    # the image's side of the closure: every requirement of the carried wheels they don't satisfy
    "$venv/bin/python" -m pip check 2>/dev/null | sed -n 's/.* requires \([^,]*\),.*/\1/p' \
        | grep -vx 'torch\|torchvision' | sort -u >"$venv/image-side.txt" || true
    "$venv/bin/python" -m pip install -q -r "$venv/image-side.txt" pluggy typer rich psutil \
        2> >(grep -v '^WARNING: Location' >&2)
    "$venv/bin/python" -m pip check | grep -v 'torch' || true
    "$venv/bin/python" - <<'EOF'
import importlib.metadata as md
import mlflow, ot, mlxtend.data, pydantic, sqlalchemy, alembic  # noqa: F401,E401
from mlflow.tracking import MlflowClient
import tempfile, pathlib
db = pathlib.Path(tempfile.mkdtemp()) / "mlflow.db"
client = MlflowClient(tracking_uri=f"sqlite:///{db}")
run = client.create_run(client.create_experiment("probe"))
client.log_metric(run.info.run_id, "x", 1.0)
assert client.get_run(run.info.run_id).data.metrics == {"x": 1.0}
print("ok: mlflow (SQLite store), ot, mlxtend, pydantic import and work on",
      __import__("sys").version.split()[0], "- torch_fidelity", md.version("torch-fidelity"),
      "needs", [r for r in md.requires("torch-fidelity") if "extra" not in r])
EOF
fi
