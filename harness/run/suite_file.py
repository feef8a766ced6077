"""Reading a suite file safely: a regular file of bounded size, YAML's safe loader only, no
alias bombs, no repeated keys, no ``!!binary``. Every problem is a :class:`SuiteError` naming
the file (and the line, for YAML syntax)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from harness.core.errors import HarnessError, SuiteError

MAX_YAML_NODES = 100_000  # after alias expansion: refuses "billion laughs" documents
MAX_SUITE_BYTES = 10 * 2**20


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes the document would have with every alias expanded, without expanding it."""
    if id(node) not in memo:
        memo[id(node)] = 1  # guards recursive aliases
        if isinstance(node, yaml.SequenceNode):
            memo[id(node)] += sum(_expanded_size(n, memo) for n in node.value)
        elif isinstance(node, yaml.MappingNode):
            memo[id(node)] += sum(
                _expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value
            )
    return memo[id(node)]


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing a key repeated in one mapping (YAML leaves it undefined and
    PyYAML keeps the last one silently). Keys brought in by a ``<<`` merge may be overridden."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                except TypeError:  # unhashable: the base class says so
                    continue
                if repeated:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_yaml_binary(self, node):
        raise yaml.constructor.ConstructorError(
            None, None, "!!binary values have no place in a suite", node.start_mark
        )


_Loader.add_constructor("tag:yaml.org,2002:binary", _Loader.construct_yaml_binary)


def read_yaml(path: Path) -> tuple[str, Any]:
    """Read a YAML file with the safe loader only, refusing anything but a regular file of at
    most MAX_SUITE_BYTES, alias bombs, deep nesting and repeated keys."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SuiteError("no such file", file=str(path)) from None
    except (OSError, ValueError) as exc:
        raise SuiteError(f"cannot read: {exc}", file=str(path)) from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise SuiteError(f"{kind}: a suite is a YAML file", file=str(path))
    if info.st_size > MAX_SUITE_BYTES:
        message = f"{info.st_size:,} bytes: a suite file is at most {MAX_SUITE_BYTES:,}"
        raise SuiteError(message, file=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"cannot read: {exc}", file=str(path)) from None
    try:
        return text, _safe_load(text, str(path))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SuiteError(f"invalid YAML: {problem}", file=str(path), field=where) from None
    except RecursionError:
        raise SuiteError("YAML nested too deeply", file=str(path)) from None


def _safe_load(text: str, file: str) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            message = f"more than {MAX_YAML_NODES:,} YAML nodes once aliases are expanded"
            raise SuiteError(message, file=file)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def experiment_name(suite: Path | None, experiment: str | None) -> str:
    """The experiment a command reads or writes: ``experiment``, else the suite file's
    ``name:``."""
    if experiment:
        return experiment
    if suite is None:
        raise HarnessError("give a suite file or --experiment NAME")
    raw = read_yaml(suite)[1]
    name = raw.get("name") if isinstance(raw, dict) else None
    if not name:
        raise HarnessError(f"{suite}: name: missing")
    return str(name)
