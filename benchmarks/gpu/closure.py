"""Fetch the wheels a package set needs on top of the device image, for CPython 3.12 on
manylinux x86_64: the roots, then every requirement (markers evaluated for that target) that the
image (``image-packages.txt``) does not already hold, level by level.

    python benchmarks/gpu/closure.py --dest benchmarks/gpu/wheels mlflow-skinny==3.17.2 ...

A root or dependency the local environment has installed is pinned to that version when it
satisfies the requirement (the versions the harness is tested with), else pip picks the newest
match. Prints one line per wheel and warns where an image version is known not to satisfy a
requirement. Needs only pip and ``packaging``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename

PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
TARGET = {  # the image: CPython 3.12 on Linux x86_64
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "implementation_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
}


def image_packages(path: Path) -> dict[str, str | None]:
    """Names on the image -> their version where known."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[canonicalize_name(name)] = version or None
    return out


def local_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def download(pins: list[str], dest: Path) -> None:
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", "--abi", "abi3"]
    cmd += ["--abi", "none", *platforms, "--dest", str(dest), *pins]
    subprocess.run(cmd, check=True)


def wheels(dest: Path) -> dict[str, Path]:
    return {canonicalize_name(parse_wheel_filename(p.name)[0]): p for p in dest.glob("*.whl")}


def requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(name).decode().splitlines()
    env = default_environment() | TARGET | {"extra": ""}
    reqs = [
        Requirement(x.split(":", 1)[1].strip()) for x in lines if x.startswith("Requires-Dist:")
    ]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(env)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", help="requirements to carry, e.g. pydantic==2.14.4")
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument(
        "--image", type=Path, default=Path(__file__).with_name("image-packages.txt")
    )
    args = parser.parse_args()
    args.dest.mkdir(parents=True, exist_ok=True)
    image = image_packages(args.image)
    wanted: dict[str, SpecifierSet] = {}
    level = [Requirement(r) for r in args.roots]
    warnings = []
    while level:
        pins = []
        for req in level:
            name = canonicalize_name(req.name)
            if name in image:
                known = image[name]
                if known and req.specifier and not req.specifier.contains(known, prereleases=True):
                    warnings.append(f"image has {name} {known}, a wheel asks for {req}")
                continue
            if name in wanted:
                wanted[name] &= req.specifier  # checked against the fetched wheel at the end
                continue
            wanted[name] = req.specifier
            mine = local_version(name)
            pin = f"{name}=={mine}" if mine and req.specifier.contains(mine, True) else str(req)
            pins.append(pin.split(";")[0])
        if pins:
            download(pins, args.dest)
        have = wheels(args.dest)
        level = [
            r for p in pins for r in requirements(have[canonicalize_name(Requirement(p).name)])
        ]
    have = wheels(args.dest)
    for name, spec in wanted.items():
        version = parse_wheel_filename(have[name].name)[1]
        if spec and not spec.contains(version, prereleases=True):
            warnings.append(f"{have[name].name} does not satisfy {name}{spec}")
    stray = set(have) - set(wanted)
    for name in sorted(stray):  # left over from an earlier, different set
        have[name].unlink()
    for name in sorted(wanted):
        print(have[name].name)
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)


if __name__ == "__main__":
    main()
