"""A Lambda-like Python on this machine: the runtime's SDK, the shared layer as built, one fresh process.

The python3.13 runtime brings boto3 and its dependencies, already compiled; it puts the function's folder
and then the layer's ``/opt/python`` on ``sys.path``; and it cannot write bytecode there (``/var/task`` and
``/opt`` are read-only), so whatever the layer ships without its bytecode is compiled again at every cold
start. :func:`build` makes the same here: a fresh venv holding only ``requirements/lambda-runtime.txt``
(compiled), and the layer built by ``layers/shared/Makefile`` for this machine's platform.
:meth:`LambdaEnv.environment` is what a deployed function sees: the template's variables, the ones Lambda
sets (tracing on, as ``Tracing: Active`` has it), and no bytecode writes.

Used by ``benchmarks/cold_import.py`` and by the layer tests; never shipped.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchbridge_local import template as tpl

ROOT = tpl.ROOT
RUNTIME_REQUIREMENTS = ROOT / "requirements" / "lambda-runtime.txt"
LAYER_SOURCE = ROOT / "layers" / "shared"
SHIPPED_PLATFORM = "aarch64-manylinux2014"  # template.yaml: Architectures [arm64]
REGION = "us-east-1"


@dataclass(frozen=True)
class Function:
    """One function of the template: its logical id, code folder and handler module."""

    logical_id: str
    code_dir: Path
    module: str
    variables: dict[str, str]


def functions(template: dict[str, Any] | None = None) -> list[Function]:
    """The template's functions, with the environment each is deployed with.

    Values the template computes (``!Ref``, ``!Sub`` ...) become the parameter's default where there is one
    and a readable stand-in otherwise: nothing is called at import, so only their presence matters.
    """
    template = template or tpl.load()
    defaults = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}

    def value(name: str, raw: Any) -> str:
        if isinstance(raw, dict) and "Ref" in raw and raw["Ref"] in defaults:
            return defaults[raw["Ref"]]
        return raw if isinstance(raw, str) else f"lambda-like-{name.lower()}"

    glob = template.get("Globals", {}).get("Function", {})
    common = glob.get("Environment", {}).get("Variables", {})
    found = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        raw = {**common, **props.get("Environment", {}).get("Variables", {})}
        handler = props.get("Handler", glob.get("Handler", "app.lambda_handler"))
        found.append(
            Function(
                logical_id=logical_id,
                code_dir=ROOT / props["CodeUri"],
                module=handler.rsplit(".", 1)[0],
                variables={k: value(k, v) for k, v in raw.items()},
            )
        )
    return found


def uv() -> str:
    """The uv that installed this environment (the Makefile puts it in .venv/bin)."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if not found:
        raise RuntimeError("uv is needed to build the Lambda-like environment (make setup installs it)")
    return found


def build_layer(target: Path, python: Path | str, platform: str = "", layer: str = "SharedLayer") -> Path:
    """Build ``layer`` (``SharedLayer`` or ``SigningLayer``) into ``target`` with its own Makefile, as
    ``sam build`` does; returns the folder that is ``/opt`` in Lambda. ``platform`` empty: this machine's
    wheels, to import them here."""
    subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(LAYER_SOURCE),
            f"build-{layer}",
            f"ARTIFACTS_DIR={target}",
            f"PYTHON={python}",
            f"UV={uv()}",
            f"PLATFORM={platform}",
        ],
        check=True,
    )
    return target


def tree_bytes(path: Path) -> int:
    """The unzipped size of a folder: the sum of its files' sizes."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


@dataclass(frozen=True)
class LambdaEnv:
    python: Path  # the venv's interpreter: the runtime's Python and SDK
    opt: Path  # the layer, as /opt

    @property
    def site_packages(self) -> Path:
        """Where the runtime's SDK is installed."""
        return Path(
            subprocess.run(
                [str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )

    def environment(self, function: Function, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment a deployed ``function`` starts with (nothing of this process's own)."""
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PYTHONPATH": f"{function.code_dir}:{self.opt / 'python'}",
            "PYTHONDONTWRITEBYTECODE": "1",  # Lambda's code folders are read-only
            "LAMBDA_TASK_ROOT": str(function.code_dir),
            "AWS_LAMBDA_FUNCTION_NAME": function.logical_id,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "_HANDLER": f"{function.module}.lambda_handler",
            # Tracing: Active. The daemon address is loopback: nothing here leaves the machine.
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
            **function.variables,
            **(extra or {}),
        }

    def run(
        self,
        function: Function,
        code: str,
        extra: dict[str, str] | None = None,
        stdin: str = "",
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``code`` in a fresh interpreter started as ``function``'s cold start would be."""
        return subprocess.run(
            [str(self.python), "-c", code],
            env=self.environment(function, extra),
            cwd=function.code_dir,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def build(root: Path, layer: Path | None = None) -> LambdaEnv:
    """A fresh venv in ``root`` with only the runtime's SDK (compiled, as the runtime has it) and the
    layer: ``layer`` if given (a folder holding ``python/``), else built here for this machine."""
    venv = root / "runtime"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = [uv(), "pip", "install", "--quiet", "--python", str(python), "--compile-bytecode"]
    subprocess.run([*install, "--only-binary", ":all:", "-r", str(RUNTIME_REQUIREMENTS)], check=True)
    opt = layer if layer is not None else build_layer(root / "opt", python)
    return LambdaEnv(python=python, opt=opt)
