"""Read ``template.yaml`` and resolve the parts the local runtime needs.

The loader understands CloudFormation's short-form tags (``!Ref``, ``!GetAtt``, ``!Sub`` ...) and turns
them into their long forms, so the real template drives the local stack: table keys, function handlers
and environments, and the state machine's definition and substitutions all come from it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

PROJECT_DIR_ENV = "BATCHBRIDGE_PROJECT_DIR"


def project_root() -> Path:
    """Where template.yaml, statemachine/ and functions/ are: ``$BATCHBRIDGE_PROJECT_DIR`` when set, else
    the checkout this package runs from (a clone, or an editable install), else the copy a wheel carries
    (``pip install '.[local]'`` bundles them as ``batchbridge_local/_project``)."""
    candidates = [Path(os.environ[PROJECT_DIR_ENV])] if os.environ.get(PROJECT_DIR_ENV) else []
    here = Path(__file__).resolve().parent
    candidates += [here.parents[1], here / "_project"]
    for candidate in candidates:
        if (candidate / "template.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"no template.yaml in {', '.join(map(str, candidates))}; "
        f"set {PROJECT_DIR_ENV} to a BatchBridge checkout"
    )


ROOT = project_root()
TEMPLATE = ROOT / "template.yaml"

_TAGS = {
    "!Ref": "Ref",
    "!GetAtt": "Fn::GetAtt",
    "!Sub": "Fn::Sub",
    "!If": "Fn::If",
    "!Join": "Fn::Join",
    "!Select": "Fn::Select",
    "!Equals": "Fn::Equals",
    "!Not": "Fn::Not",
    "!And": "Fn::And",
    "!Or": "Fn::Or",
    "!FindInMap": "Fn::FindInMap",
    "!GetAZs": "Fn::GetAZs",
    "!ImportValue": "Fn::ImportValue",
    "!Split": "Fn::Split",
    "!Base64": "Fn::Base64",
    "!Condition": "Condition",
}


class _Loader(yaml.SafeLoader):
    pass


def _constructor(long_name: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if long_name == "Fn::GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {long_name: value}

    return construct


for _tag, _name in _TAGS.items():
    _Loader.add_constructor(_tag, _constructor(_name))


def load(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open() as handle:
        return yaml.load(handle, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


class Resolver:
    """Resolves intrinsic functions against the local stack's names and ARNs."""

    def __init__(self, refs: dict[str, str], attrs: dict[tuple[str, str], str], pseudo: dict[str, str]):
        self.refs = {**pseudo, **refs}
        self.attrs = attrs

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.refs[arg]
            if key == "Fn::GetAtt":
                return self.attrs[(arg[0], arg[1])]
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                extra = {k: self(v) for k, v in extra.items()}
                return re.sub(r"\$\{([^}]+)\}", lambda m: str(self._sub(m.group(1), extra)), text)
            if key == "Fn::Join":
                return arg[0].join(str(self(v)) for v in arg[1])
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        return value

    def _sub(self, name: str, extra: dict[str, Any]) -> Any:
        if name in extra:
            return extra[name]
        if "." in name:
            resource, attr = name.split(".", 1)
            return self.attrs[(resource, attr)]
        return self.refs[name]
