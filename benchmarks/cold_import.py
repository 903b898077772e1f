"""Cold start: each handler's import against a bare ``import boto3``, and the layer's size, in one run.

Run it from the repository root (``make bench-cold``)::

    PYTHONPATH=layers/shared:local:. python -m benchmarks.cold_import            # 9 rounds
    PYTHONPATH=layers/shared:local:. python -m benchmarks.cold_import --quick    # CI's small form

It builds, in a temporary folder, what a function starts in (``batchbridge_local.lambda_env``): a fresh
venv with only the runtime's SDK (``requirements/lambda-runtime.txt``, compiled as the runtime has it)
and the shared layer built by its own Makefile for this machine, the template's environment with tracing
on, and no bytecode writes (Lambda's code folders are read-only). Each round starts a fresh interpreter
per handler, and beside each one a fresh interpreter that imports boto3 alone: that pair's ratio, CPU
time over CPU time, is the handler's figure for the round, and the median over rounds is the one
printed (CPU time, because other work on the machine stretches wall time but hardly CPU time; the wall
medians are printed too). Target: every handler at most 1.5 times ``import boto3``.

The import is not all a cold start loads: the first invocation builds the deployed deps (``Deps.default()``:
the DynamoDB repository, the bucket, the workflow gateway, and boto3 with them where the import has not
loaded it). The ``+ deps`` column times that too, after the import in the same interpreter, against the
same ``import boto3``; it is printed, not judged. A function that calls a vendor also loads its provider's
adapter (that one alone) and the connection code on first use.

The layer's size is that of the arm64 layer ``sam build`` ships (built by the same Makefile), against
the layer the same requirements make when nothing is left out (the runtime's SDK pulled in by
aws-xray-sdk, no bytecode): target at most 15 MB unzipped.

Checked in every run, and failing it whatever the timings: no module the handlers import from the layer
is compiled at cold start, and no module of the runtime's SDK is loaded from the layer. ``--quick``
(``make bench-smoke``) runs one round without a warm-up and judges only those checks and the size: one
round on a busy machine says little about a ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from batchbridge_local import lambda_env

TARGET_RATIO = 1.5
TARGET_LAYER_MB = 15.0
ROUNDS = 9
QUICK_ROUNDS = 1
RUNTIME_SDK = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")

# Runs in the fresh interpreter: the timed import first, before anything else is imported; then, timed
# apart, what the first invocation of every function loads before its first call to AWS (the deployed
# deps: repository, bucket, workflow gateway), which the import alone does not show.
_PROBE = """
import time
_cpu, _wall = time.process_time(), time.perf_counter()
import {module}
_cpu, _wall = time.process_time() - _cpu, time.perf_counter() - _wall
import sys
_modules = len(sys.modules)
_deps = time.process_time()
{deps}
_deps = time.process_time() - _deps
import json, os, sys
opt = os.path.join({opt!r}, "")
from_layer = [(n, m) for n, m in list(sys.modules.items())
              if (getattr(m, "__file__", None) or "").startswith(opt)]
print(json.dumps({{
    "cpu": _cpu,
    "wall": _wall,
    "deps": _deps,
    "modules": _modules,
    "compiled": sorted(n for n, m in from_layer if m.__file__.endswith(".py")
                       and not (m.__spec__ and m.__spec__.cached and os.path.exists(m.__spec__.cached))),
    "sdk_from_layer": sorted(n for n, _ in from_layer if n.split(".")[0] in {sdk!r}),
}}))
"""


@dataclass(frozen=True)
class Row:
    name: str
    cpu_ms: float
    wall_ms: float
    ratio: float
    modules: int
    passed: bool
    # The import and then the deployed deps, as the first invocation builds them: CPU ms, and vs boto3.
    with_deps_ms: float
    with_deps_ratio: float


def probe(env: lambda_env.LambdaEnv, function: lambda_env.Function, module: str) -> dict[str, object]:
    """One cold import of ``module`` in a fresh interpreter started as ``function`` is. The yardstick,
    ``import boto3``, runs without the layer: the runtime's own SDK, whatever the layer holds."""
    alone = {"PYTHONPATH": str(function.code_dir)} if module == "boto3" else None
    deps = "pass" if alone else "from batchbridge.tasks import Deps\nDeps.default()"
    code = _PROBE.format(module=module, deps=deps, sdk=set(RUNTIME_SDK), opt=str(env.opt / "python"))
    done = env.run(function, code, alone)
    if done.returncode != 0:
        raise RuntimeError(f"importing {module} as {function.logical_id} failed:\n{done.stderr}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(env: lambda_env.LambdaEnv, rounds: int, warmup: bool = True) -> tuple[list[Row], list[str]]:
    """Time every handler ``rounds`` times, each run paired with a bare ``import boto3``."""
    functions = lambda_env.functions()
    samples: dict[str, list[tuple[dict[str, object], dict[str, object]]]] = {
        f.logical_id: [] for f in functions
    }
    problems: set[str] = set()
    for function in functions if warmup else ():  # the files into the page cache; not counted
        probe(env, function, function.module)
        probe(env, function, "boto3")
    for _ in range(rounds):
        for function in functions:
            base, handler = probe(env, function, "boto3"), probe(env, function, function.module)
            samples[function.logical_id].append((base, handler))
            problems.update(_problems(function.logical_id, handler))
    rows = []
    bases = [b for pairs in samples.values() for b, _ in pairs]
    base_ms = _ms(bases, "cpu")
    rows.append(
        Row("import boto3", base_ms, _ms(bases, "wall"), 1.0, _median(bases, "modules"), True, base_ms, 1.0)
    )
    for name, pairs in samples.items():
        ratio = statistics.median(float(h["cpu"]) / float(b["cpu"]) for b, h in pairs)  # type: ignore[arg-type]
        with_deps = statistics.median(
            (float(h["cpu"]) + float(h["deps"])) / float(b["cpu"])  # type: ignore[arg-type]
            for b, h in pairs
        )
        handlers = [h for _, h in pairs]
        rows.append(
            Row(
                name,
                _ms(handlers, "cpu"),
                _ms(handlers, "wall"),
                round(ratio, 2),
                _median(handlers, "modules"),
                ratio <= TARGET_RATIO,
                round(statistics.median(float(h["cpu"]) + float(h["deps"]) for h in handlers) * 1000, 1),  # type: ignore[arg-type]
                round(with_deps, 2),
            )
        )
    return rows, sorted(problems)


def _problems(name: str, run: dict[str, object]) -> list[str]:
    found = []
    for key, what in (
        ("compiled", "compiled at every cold start (no bytecode shipped)"),
        ("sdk_from_layer", "of the runtime's SDK loaded from the layer, shadowing the runtime's"),
    ):
        modules: list[str] = run[key]  # type: ignore[assignment]
        if modules:
            found.append(f"{name}: {len(modules)} modules {what}, e.g. {', '.join(modules[:3])}")
    return found


def _ms(runs: Sequence[dict[str, object]], key: str) -> float:
    return round(statistics.median(float(r[key]) for r in runs) * 1000, 1)  # type: ignore[arg-type]


def _median(runs: Sequence[dict[str, object]], key: str) -> int:
    return int(statistics.median(int(r[key]) for r in runs))  # type: ignore[call-overload]


def layer_sizes(work: Path, python: Path) -> dict[str, float]:
    """MB (10^6 bytes, unzipped) of the arm64 layer as built, and of the same requirements with nothing
    left out, as a plain pip build of them makes it (the baseline)."""
    shipped = lambda_env.build_layer(work / "arm64", python, lambda_env.SHIPPED_PLATFORM)
    plain = work / "plain" / "python"
    requirements = lambda_env.ROOT / "requirements"
    install = [lambda_env.uv(), "pip", "install", "--quiet", "--python", str(python), "--target", str(plain)]
    install += ["--only-binary", ":all:", "--python-platform", lambda_env.SHIPPED_PLATFORM]
    install += ["-r", str(requirements / "runtime.in"), "-c", str(requirements / "dev.lock")]
    subprocess.run(install, check=True)
    subprocess.run(["cp", "-R", str(lambda_env.LAYER_SOURCE / "batchbridge"), str(plain)], check=True)
    return {
        "layer_mb": round(lambda_env.tree_bytes(shipped) / 1e6, 2),
        "plain_mb": round(lambda_env.tree_bytes(plain.parent) / 1e6, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="CI's small form: one round, ratios not judged")
    parser.add_argument("--rounds", type=int, help="rounds of timed imports (each handler once a round)")
    parser.add_argument("--layer", type=Path, help="time this built layer (a folder holding python/)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args(argv)
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="batchbridge-cold-") as tmp:
        work = Path(tmp)
        env = lambda_env.build(work, args.layer)
        rows, problems = measure(env, rounds, warmup=not args.quick)
        sizes = layer_sizes(work, env.python)
    size_passed = sizes["layer_mb"] <= TARGET_LAYER_MB
    # One round on a busy machine says nothing about a ratio: --quick judges what does not vary.
    timed_passed = args.quick or all(r.passed for r in rows)
    passed = timed_passed and size_passed and not problems
    if args.json:
        print(
            json.dumps({"rows": [asdict(r) for r in rows], **sizes, "problems": problems, "passed": passed})
        )
        return 0 if passed else 1
    print(f"Cold import, Lambda-like (fresh venv: {_sdk_line()}; layer as built, tracing on, no bytecode")
    print(f"writes); {rounds} rounds, each handler paired with a bare import boto3; medians.\n")
    print(
        f"{'import':<24} {'CPU ms':>8} {'wall ms':>8} {'modules':>8} {'vs boto3':>9}  {'+ deps':>15}  "
        f"target <= {TARGET_RATIO}"
    )
    for r in rows:
        verdict = "PASS" if r.passed else ("over (not judged: --quick)" if args.quick else "FAIL")
        verdict = "baseline" if r.name == "import boto3" else verdict
        print(
            f"{r.name:<24} {r.cpu_ms:>8.1f} {r.wall_ms:>8.1f} {r.modules:>8} {r.ratio:>8.2f}x  "
            f"{r.with_deps_ms:>7.1f} {r.with_deps_ratio:>6.2f}x  {verdict}"
        )
    print(
        "\n+ deps: the import, then the deployed deps the first invocation builds before its first AWS call"
        " (not judged; a function\nthat calls a vendor loads its provider's adapter and connection code"
        " besides, on first use)."
    )
    print(
        f"\nLayer (arm64, as sam build ships it): {sizes['layer_mb']:.2f} MB unzipped; the same requirements"
        f" with nothing left out: {sizes['plain_mb']:.2f} MB ({sizes['layer_mb'] / sizes['plain_mb']:.2f}x)"
        f"  target <= {TARGET_LAYER_MB:g} MB  {'PASS' if size_passed else 'FAIL'}"
    )
    print(
        "\n".join(f"FAIL: {p}" for p in problems)
        or "No module compiled at cold start; the SDK is the runtime's."
    )
    print(f"{'PASS' if passed else 'FAIL'} ({time.perf_counter() - began:.0f} s)")
    return 0 if passed else 1


def _sdk_line() -> str:
    pins = [
        line for line in lambda_env.RUNTIME_REQUIREMENTS.read_text().splitlines() if line.startswith("boto")
    ]
    return ", ".join(pins) + " only"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
