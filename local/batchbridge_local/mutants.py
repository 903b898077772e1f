"""Do the tests hold the guards? Each mutant below removes or weakens one guard of the lifecycle (the
kind of one-line change a refactor makes by accident); the tests named beside it must then fail.

    python -m batchbridge_local.mutants            # every mutant (a few minutes)
    python -m batchbridge_local.mutants --list     # what they are

Each mutant is applied to a copy of the repository's code in a temporary folder (the checkout is never
touched) and the named tests run there; a mutant the tests do not fail on "survived" and the run fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from batchbridge_local.template import ROOT

REPO = "tests/integration/test_repository.py"
SUBMIT = "tests/unit/test_task_submit.py"
CHECK_COLLECT = "tests/unit/test_task_check_collect.py"
CALLBACKS = "tests/unit/test_task_callbacks.py"
JOIN = "tests/unit/test_join.py"
RULES = "tests/unit/test_outcome_rules.py"
POLLING = "tests/unit/test_polling.py"
HOSTILE = "tests/integration/test_hostile_input.py"
API = "tests/integration/test_api.py"
IDEMPOTENCY = "tests/integration/test_idempotency_concurrency.py"
REPOSITORY_PY = "layers/shared/batchbridge/repository/__init__.py"
MEMORY_PY = "layers/shared/batchbridge/repository/memory.py"
DYNAMO_PY = "layers/shared/batchbridge/repository/dynamo.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = (
    Mutant(
        "a chunk is claimed whatever its state",
        REPOSITORY_PY,
        '"claim": ((ChunkState.PENDING,), (ChunkState.SUBMITTING,)),',
        '"claim": (UNSETTLED, (ChunkState.SUBMITTING,)),',
        (REPO + "::test_a_chunk_is_claimed_once", SUBMIT),
    ),
    Mutant(
        "a submission is recorded whatever the chunk's state",
        REPOSITORY_PY,
        '"record_submission": ((ChunkState.SUBMITTING, ChunkState.UNCONFIRMED), (ChunkState.RUNNING,)),',
        '"record_submission": ((*UNSETTLED, ChunkState.COLLECTING), (ChunkState.RUNNING,)),',
        (REPO, SUBMIT),
    ),
    Mutant(
        "a lost claim is reported as won",
        REPOSITORY_PY,
        "        if won is True:\n            return Claim.WON",
        "        if won:\n            return Claim.WON",
        (REPO, SUBMIT),
    ),
    Mutant(
        "a claim ignores a requested cancel",
        REPOSITORY_PY,
        '(NOT_TERMINAL, NOT_CANCELLED, Expect("prepared", "in", (True,)))',
        '(NOT_TERMINAL, Expect("prepared", "in", (True,)))',
        (
            REPO + "::test_no_chunk_is_claimed_after_a_cancel_or_before_every_chunk_exists_or_after_the_end",
            SUBMIT,
        ),
    ),
    Mutant(
        "chunk items are created over existing ones (memory)",
        MEMORY_PY,
        "            if key in self.items:\n                return False\n            self.items[key]",
        "            self.items[key]",
        (REPO + "::test_chunk_items_are_never_overwritten",),
    ),
    Mutant(
        "chunk items are created over existing ones (DynamoDB)",
        DYNAMO_PY,
        'self.table.put_item(Item=full, ConditionExpression="attribute_not_exists(pk)")',
        "self.table.put_item(Item=full)",
        (REPO + "::test_chunk_items_are_never_overwritten",),
    ),
    Mutant(
        "the store lets a terminal status change",
        REPOSITORY_PY,
        'expect: tuple[Expect, ...] = (Expect("status", "in", tuple(s.value for s in OPEN)),)',
        "expect: tuple[Expect, ...] = ()",
        (REPO + "::test_a_terminal_status_never_changes",),
    ),
    Mutant(
        "the store lets a non-cancel status over a requested cancel",
        REPOSITORY_PY,
        (
            "        if status not in (BatchStatus.CANCELLED, BatchStatus.NEEDS_ATTENTION):\n"
            "            expect += (NOT_CANCELLED,)"
        ),
        "        pass",
        (REPO, CHECK_COLLECT),
    ),
    Mutant(
        "finalize finishes a batch that has finished",
        "layers/shared/batchbridge/tasks/finalize.py",
        "    if batch.status.is_terminal and batch.finished_at:",
        "    if False:",
        (CHECK_COLLECT,),
    ),
    Mutant(
        "a check ignores a requested cancel",
        "layers/shared/batchbridge/tasks/check.py",
        "    if batch.status.is_terminal or batch.cancel_requested:",
        "    if batch.status.is_terminal:",
        (CHECK_COLLECT,),
    ),
    Mutant(
        "one round past the cap",
        "layers/shared/batchbridge/tasks/check.py",
        "batch.rounds >= MAX_ROUNDS",
        "batch.rounds > MAX_ROUNDS",
        (CHECK_COLLECT,),
    ),
    Mutant(
        "one submit round past the cap",
        "layers/shared/batchbridge/tasks/submit.py",
        "batch.rounds >= MAX_ROUNDS",
        "batch.rounds > MAX_ROUNDS",
        (SUBMIT,),
    ),
    Mutant(
        "a throttled status check ignores Retry-After",
        "layers/shared/batchbridge/tasks/check.py",
        "        retry_after=retry_after,",
        "        retry_after=None,",
        (CHECK_COLLECT,),
    ),
    Mutant(
        "a page of outcomes starts again at the token's own row",
        MEMORY_PY,
        "(after is None or k > after)",
        "(after is None or k >= after)",
        (REPO + "::test_a_page_of_one_kind_holds_only_that_kind_and_pages_continue_where_they_left",),
    ),
    Mutant(
        "a results token from another batch is accepted",
        REPOSITORY_PY,
        "    if data[0] != batch_id or not data[1].startswith(prefix):",
        "    if not data[1].startswith(prefix):",
        (REPO + "::test_a_page_token_is_refused_for_another_batch_or_filter_and_when_it_is_not_ours",),
    ),
    Mutant(
        "an idempotent replay hands out a batch id that may never exist",
        "layers/shared/batchbridge/api.py",
        "        existing = deps.repo.get_batch(batch_id)\n    except BatchBridgeError:",
        "        existing = deps.repo.get_batch(batch_id) if False else None\n    except BatchBridgeError:",
        (IDEMPOTENCY,),
    ),
    Mutant(
        "a stale submit writes SUBMITTING over a cancel",
        REPOSITORY_PY,
        '            (Expect("status", "in", (BatchStatus.ACCEPTED.value,)), NOT_CANCELLED),',
        "            (NOT_TERMINAL,),",
        (REPO, SUBMIT),
    ),
    Mutant(
        "an ambiguous submit is sent again",
        "layers/shared/batchbridge/tasks/submit.py",
        (
            "        repo.mark_unconfirmed(batch_id, index)\n"
            "        repo.add_ambiguous_chunk(batch_id, index)\n"
            "        raise"
        ),
        "        repo.release_chunk(batch_id, index)\n        raise",
        (SUBMIT,),
    ),
    Mutant(
        "a settlement is decided twice",
        REPOSITORY_PY,
        '"begin_settling": (UNSETTLED, (ChunkState.COLLECTING,)),',
        '"begin_settling": ((*UNSETTLED, ChunkState.COLLECTING), (ChunkState.COLLECTING,)),',
        (REPO,),
    ),
    Mutant(
        "a settlement is decided from a stale read",
        REPOSITORY_PY,
        (
            '            expect=(Expect("state", "in", (chunk.state.value,)),),\n'
            "            set={\n"
            '                "state": ChunkState.COLLECTING.value,'
        ),
        '            expect=(),\n            set={\n                "state": ChunkState.COLLECTING.value,',
        (REPO, CHECK_COLLECT),
    ),
    Mutant(
        "a job with two disagreeing outcomes is credited with the first",
        "layers/shared/batchbridge/tasks/outcomes.py",
        "            conflicted.add(outcome.index)",
        "            pass",
        (RULES,),
    ),
    Mutant(
        "an unconfirmed callback wakes the workflow",
        "layers/shared/batchbridge/tasks/callbacks.py",
        "    if not confirmed:\n        return",
        "    if False:\n        return",
        (CALLBACKS,),
    ),
    Mutant(
        "callbacks are not rate-limited",
        "layers/shared/batchbridge/tasks/callbacks.py",
        "    if not deps.repo.claim_callback_check(batch_id, now, not_before=now - interval):",
        "    if False:",
        (CALLBACKS,),
    ),
    Mutant(
        "a join forgets its tail between invocations",
        "layers/shared/batchbridge/tasks/join.py",
        "            buffers[name].write(deps.objects.read(tail_key(batch_id, name, at)))",
        "            pass",
        (JOIN,),
    ),
    Mutant(
        "a body nested past the recursion limit is a 500",
        "layers/shared/batchbridge/api.py",
        (
            "    except RecursionError:\n"
            '        raise RequestError(400, "MALFORMED_JSON", "the body nests too deeply") from None'
        ),
        "    except ZeroDivisionError:\n        raise",
        (HOSTILE,),
    ),
    Mutant(
        "the policy waits past the deadline",
        "layers/shared/batchbridge/polling.py",
        "    return min(round(wait, 3), remaining), new_state",
        "    return round(wait, 3), new_state",
        (POLLING,),
    ),
)


def run(mutant: Mutant | None, python: str, tests: tuple[str, ...] = ()) -> tuple[bool, float, str]:
    """Apply the mutant to a copy of the code and run its tests; True when they failed (it was killed).
    With no mutant, the copy is left as it is: its tests must pass, or no kill means anything."""
    with tempfile.TemporaryDirectory(prefix="mutant-") as folder:
        copy = Path(folder)
        for part in (
            "layers",
            "local",
            "client",
            "functions",
            "tests",
            "statemachine",
            "schemas",
            "events",
            "docs",
            "benchmarks",
        ):
            if (ROOT / part).exists():
                shutil.copytree(
                    ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                )
        for name in ("template.yaml", "pyproject.toml", "README.md", "samconfig.toml", "env.json"):
            if (ROOT / name).exists():
                shutil.copy2(ROOT / name, copy / name)
        if mutant is not None:
            target = copy / mutant.path
            text = target.read_text()
            if text.count(mutant.old) != 1:
                raise SystemExit(
                    f"mutant {mutant.name!r}: its line is not in {mutant.path} exactly once; update it"
                )
            target.write_text(text.replace(mutant.old, mutant.new))
            tests = mutant.tests
        env = {"PYTHONPATH": ":".join(str(copy / p) for p in ("layers/shared", "local", "client", "."))}
        started = time.monotonic()
        answer = subprocess.run(  # noqa: S603 - this interpreter, on a copy of this repository's tests
            [python, "-m", "pytest", "-q", "-x", "-n", "0", "-p", "no:cacheprovider", *tests],
            cwd=copy,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=False,
        )
        return (
            answer.returncode != 0,
            time.monotonic() - started,
            answer.stdout[-3000:] + answer.stderr[-2000:],
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--only", help="run the mutants whose name contains this")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or args.only in m.name]
    if args.list:
        for m in chosen:
            print(f"{m.name}  ({m.path}; {', '.join(m.tests)})")
        return 0
    every_test = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
    failed, seconds, output = run(None, sys.executable, every_test)
    if failed:
        print(output, file=sys.stderr)
        print(f"the tests fail without any mutant ({seconds:.0f} s): fix them first", file=sys.stderr)
        return 2
    print(f"unmutated: the {len(every_test)} test selections pass ({seconds:.0f} s)", flush=True)
    survived = []
    for m in chosen:
        killed, seconds, _ = run(m, sys.executable)
        print(f"{'killed  ' if killed else 'SURVIVED'} {seconds:5.1f} s  {m.name}", flush=True)
        if not killed:
            survived.append(m.name)
    print(f"\n{len(chosen) - len(survived)} of {len(chosen)} mutants killed")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
