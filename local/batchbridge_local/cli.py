"""``python -m batchbridge_local``: run BatchBridge on one machine.

``demo`` starts the local stack and the iVvy simulator, submits a real batch through the API handler,
runs the real workflow, shows progress, and prints the summary, where the results are, and the
completion event as an SQS subscriber of the topic received it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()


@click.group()
def main() -> None:
    """BatchBridge on the local stack (moto + provider simulators)."""


@main.command()
@click.option(
    "--jobs", default=450, show_default=True, type=click.IntRange(1, 10_000), help="iVvy jobs in the batch"
)
@click.option(
    "--invalid-every",
    default=9,
    show_default=True,
    type=click.IntRange(0),
    help="make every Nth booking session invalid (0: none)",
)
@click.option(
    "--job-seconds",
    default=4.0,
    show_default=True,
    type=click.FloatRange(0.1, 600),
    help="how long the simulated iVvy takes to run each chunk",
)
@click.option("--timeout", default=300.0, show_default=True, help="give up waiting after this many seconds")
def demo(jobs: int, invalid_every: int, job_seconds: float, timeout: float) -> None:
    """Submit a batch of iVvy booking sessions and follow it to completion."""
    from batchbridge_local.simulators.ivvy import IvvySimulator, booking_session_jobs
    from batchbridge_local.stack import LocalStack

    with IvvySimulator(job_seconds=job_seconds) as sim, LocalStack() as stack:
        console.print(
            f"[bold]Local stack up[/]: state machine, table, bucket, topic from template.yaml; "
            f"iVvy simulator on {sim.base_url}"
        )
        stack.add_connection(
            "ivvy-demo", "ivvy", sim.base_url, {"apiKey": sim.api_key, "apiSecret": sim.api_secret}
        )
        request = {
            "provider": "ivvy",
            "connection": "ivvy-demo",
            "clientReference": "local-demo",
            "jobs": booking_session_jobs(jobs, invalid_every=invalid_every),
        }
        status, accepted = stack.api(
            "POST", "/batches", request, headers={"Idempotency-Key": f"demo-{time.time_ns()}"}
        )
        if status != 202:
            raise click.ClickException(f"POST /batches answered {status}: {json.dumps(accepted)}")
        batch_id = accepted["batchId"]
        console.print(f"POST /batches -> [green]{status}[/] batch [bold]{batch_id}[/]")
        view = _follow(stack, batch_id, timeout)
        _summary(stack, view)


def _follow(stack: Any, batch_id: str, timeout: float) -> dict[str, Any]:
    columns = (
        TextColumn("[bold]{task.fields[status]:<20}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("polls {task.fields[polls]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("batch", total=100, status="ACCEPTED", polls=0)

        def show(view: dict[str, Any]) -> None:
            progress.update(
                task, completed=view.get("progress") or 0, status=view["status"], polls=view.get("polls", 0)
            )

        view = stack.wait_for_batch(batch_id, timeout=timeout, on_poll=show)
        show({**view, "progress": 100 if view["status"] != "FAILED" else view.get("progress") or 0})
    return view


def _summary(stack: Any, view: dict[str, Any]) -> None:
    counts = view.get("counts", {})
    table = Table(title=f"Batch {view['batchId']}", show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in [
        ("status", view["status"]),
        ("jobs", view["jobCount"]),
        ("chunks", view["chunkCount"]),
        ("succeeded", counts.get("succeeded")),
        ("failed", counts.get("failed")),
        ("not processed", counts.get("notProcessed")),
        ("rounds (submit + checks)", view.get("polls")),
        ("AWS cost", f"${(view.get('cost') or {}).get('totalUsd', 0):.5f}"),
        ("results (JSON Lines)", f"s3://{view['results']['bucket']}/{view['results']['key']}"),
        ("outcome rows", f"DynamoDB {stack.table_name}, pk BATCH#{view['batchId']}"),
    ]:
        table.add_row(key, str(value))
    if view.get("error"):
        table.add_row("error", f"{view['error']['code']}: {view['error']['message']}")
    console.print(table)
    _, page = stack.api(
        "GET", f"/batches/{view['batchId']}/results", query={"outcome": "failed", "limit": "2"}
    )
    if page.get("items"):
        console.print("[bold]First failed outcomes[/] (GET /batches/{id}/results?outcome=failed&limit=2):")
        console.print_json(json.dumps(page["items"]))
    received = stack.received_events(view["batchId"], wait=5)
    if not received:
        raise click.ClickException("no completion event reached the subscriber queue")
    console.print(
        "[bold]Completion event as received by the SQS subscriber[/] (message attributes, then body):"
    )
    console.print_json(json.dumps(received[0]["attributes"]))
    console.print_json(json.dumps(received[0]["event"]))
