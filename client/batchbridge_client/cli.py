"""``batchbridge``: submit files of jobs, follow batches, download and retry their outcomes.

Exit codes: 0 done (for ``submit --wait`` and ``wait``: the batch SUCCEEDED), 1 the batch ended otherwise,
2 a usage error, 3 a refused file or an API error, 4 a time limit.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from batchbridge_client.client import (
    ApiError,
    BatchBridgeClient,
    BatchBridgeError,
    InvalidFileError,
    TimedOutError,
    resolve_api_url,
)

OUTCOMES = ("succeeded", "failed", "not_processed")
EXIT_NOT_SUCCEEDED, EXIT_ERROR, EXIT_TIMEOUT = 1, 3, 4

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, however narrow the terminal


class Settings:
    def __init__(
        self, api_url: str | None, stack: str | None, region: str | None, profile: str | None
    ) -> None:
        self.api_url, self.stack, self.region, self.profile = api_url, stack, region, profile
        self._client: BatchBridgeClient | None = None

    @property
    def client(self) -> BatchBridgeClient:
        if self._client is None:
            import botocore.session

            session = botocore.session.Session(profile=self.profile)
            if self.region:
                session.set_config_variable("region", self.region)
            url = resolve_api_url(self.api_url, self.stack, self.region)
            self._client = BatchBridgeClient(url, session=session, region=self.region)
        return self._client


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Every failure the client knows ends the command with one line on stderr (a refused file: one line
    per problem, as ``FILE:line N: field: message``)."""
    try:
        yield
    except InvalidFileError as exc:
        for line in exc.problems or [str(exc)]:
            err.print(line, markup=False, highlight=False)
        count = len(exc.problems)
        err.print(f"error: {exc.path} was refused ({count} problem(s) above)", markup=False, highlight=False)
        sys.exit(EXIT_ERROR)
    except ApiError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        for detail in exc.details:
            err.print(f"  {detail.get('field')}: {detail.get('message')}", markup=False, highlight=False)
        sys.exit(EXIT_ERROR)
    except TimedOutError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(EXIT_TIMEOUT)
    except BatchBridgeError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(EXIT_ERROR)


def _json_option(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object")
    return parsed


@contextmanager
def _bar(*columns: Any, transient: bool = False) -> Iterator[Progress]:
    """A progress bar on stderr when it is a terminal; elsewhere (a pipe, CI, a log) one that shows
    nothing at all, so that stderr holds only the lines that matter."""
    with Progress(
        *columns, console=err if err.is_terminal else Console(file=io.StringIO()), transient=transient
    ) as bar:
        yield bar


def _print_json(value: Any) -> None:
    out.print_json(json.dumps(value))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--api-url", envvar="BATCHBRIDGE_API_URL", help="The API's base URL [env BATCHBRIDGE_API_URL].")
@click.option("--stack", help="Read the API URL from this CloudFormation stack's ApiUrl output.")
@click.option("--region", help="AWS region (default: the credential chain's, or the API URL's).")
@click.option(
    "--profile", envvar="AWS_PROFILE", help="AWS profile of the credential chain [env AWS_PROFILE]."
)
@click.version_option(package_name="batchbridge")
@click.pass_context
def main(
    ctx: click.Context, api_url: str | None, stack: str | None, region: str | None, profile: str | None
) -> None:
    """BatchBridge: run SaaS vendors' batch jobs to completion.

    Calls are signed with AWS Signature Version 4 using the standard credential chain (environment,
    ~/.aws, SSO, instance role). Against `batchbridge local serve` no credentials are needed.
    """
    ctx.obj = Settings(api_url, stack, region, profile)


pass_settings = click.make_pass_decorator(Settings)


def waiting_options[F: Callable[..., Any]](command: F) -> F:
    """``--timeout`` and ``--interval``, for every command that follows a batch."""
    command = click.option(
        "--interval", default=2.0, show_default=True, help="Seconds between status checks."
    )(command)
    return click.option(
        "--timeout", default=24 * 3600.0, show_default=True, help="Give up waiting after this many seconds."
    )(command)


# --- submit and follow ----------------------------------------------------------------------------------
def _follow(client: BatchBridgeClient, batch_id: str, timeout: float, interval: float) -> dict[str, Any]:
    columns = (
        TextColumn("[bold]{task.fields[status]:<20}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
    )
    with _bar(*columns) as progress:
        task = progress.add_task("batch", total=100, status="ACCEPTED", counts="")

        def show(view: dict[str, Any]) -> None:
            counts = view.get("counts") or {}
            text = ", ".join(
                f"{counts[k]} {k}" for k in ("succeeded", "failed", "notProcessed") if counts.get(k)
            )
            done = (
                100 if view["status"] in ("SUCCEEDED", "PARTIALLY_SUCCEEDED") else view.get("progress") or 0
            )
            progress.update(task, completed=done, status=view["status"], counts=text)

        return client.wait(batch_id, timeout=timeout, interval=interval, on_poll=show)


def _ended(view: dict[str, Any]) -> None:
    counts = view.get("counts") or {}
    out.print(
        f"batch {view['batchId']} {view['status']}: {counts.get('succeeded', 0)} succeeded, "
        f"{counts.get('failed', 0)} failed, {counts.get('notProcessed', 0)} not processed",
        highlight=False,
    )
    if view["status"] != "SUCCEEDED":
        if view.get("error"):
            err.print(
                f"{view['error'].get('code')}: {view['error'].get('message')}", markup=False, highlight=False
            )
        sys.exit(EXIT_NOT_SUCCEEDED)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--provider", "-p", required=True, help="Provider name (see `batchbridge providers`).")
@click.option("--connection", "-c", required=True, help="Connection name (a Secrets Manager secret).")
@click.option("--reference", "-r", help="Your reference for the batch (clientReference).")
@click.option("--options", "options_text", metavar="JSON|@FILE", help="The provider's batch options.")
@click.option(
    "--deadline", type=click.IntRange(1), help="Seconds the batch may run (default: the provider's)."
)
@click.option(
    "--retry-of", metavar="BATCH_ID", help="A finished batch whose jobs this file retries (fixed): linked."
)
@click.option(
    "--wait", "wait_", is_flag=True, help="Follow the batch to its end; exit 1 unless it succeeded."
)
@waiting_options
@pass_settings
def submit(
    settings: Settings,
    file: Path,
    provider: str,
    connection: str,
    reference: str | None,
    options_text: str | None,
    deadline: int | None,
    retry_of: str | None,
    wait_: bool,
    timeout: float,
    interval: float,
) -> None:
    """Upload FILE (JSON Lines or CSV, by extension), have it validated, and start a batch from it.

    \b
    batchbridge submit sessions.jsonl -p ivvy -c ivvy-local --reference march --wait
    batchbridge submit fixed.jsonl -p ivvy -c ivvy-local --retry-of 7c9e... --wait
    """
    options = _json_option(options_text)
    with one_line_errors():
        client = settings.client
        columns = (TextColumn("uploading"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with _bar(*columns, transient=True) as progress:
            task = progress.add_task("upload", total=file.stat().st_size)
            on_bytes: Callable[[int], None] = lambda n: progress.advance(task, n)  # noqa: E731
            upload = client.upload_file(file, provider, options=options, on_bytes=on_bytes)
        err.print(f"{file}: {upload['jobCount']} jobs, valid (upload {upload['uploadId']})", highlight=False)
        accepted = client.start_from_upload(
            upload["uploadId"],
            provider,
            connection,
            client_reference=reference,
            options=options,
            deadline_seconds=deadline,
            retry_of=retry_of,
        )
        out.print(accepted["batchId"], highlight=False)
        if wait_:
            _ended(_follow(client, accepted["batchId"], timeout, interval))


@main.command()
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")
@pass_settings
def status(settings: Settings, batch_id: str, as_json: bool) -> None:
    """Show a batch: status, progress, counts."""
    with one_line_errors():
        view = settings.client.get_batch(batch_id)
    if as_json:
        _print_json(view)
        return
    table = Table(show_header=False, box=None)
    counts = view.get("counts") or {}
    for key, value in (
        ("batch", view["batchId"]),
        ("status", view["status"]),
        ("provider", f"{view['provider']} ({view['connection']})"),
        ("reference", view.get("clientReference")),
        ("jobs", view["jobCount"]),
        ("progress", f"{view['progress']:.0f}%" if view.get("progress") is not None else None),
        ("succeeded", counts.get("succeeded")),
        ("failed", counts.get("failed")),
        ("not processed", counts.get("notProcessed")),
        ("retry of", view.get("retryOf")),
        ("retries", ", ".join(view.get("retries") or []) or None),
        ("created", view["createdAt"]),
        ("finished", view.get("finishedAt")),
        ("error", f"{view['error']['code']}: {view['error']['message']}" if view.get("error") else None),
    ):
        if value is not None:
            table.add_row(key, str(value))
    out.print(table)


@main.command()
@click.argument("batch_id")
@waiting_options
@pass_settings
def wait(settings: Settings, batch_id: str, timeout: float, interval: float) -> None:
    """Follow a batch to its end with a progress bar; exit 0 only if it SUCCEEDED."""
    with one_line_errors():
        _ended(_follow(settings.client, batch_id, timeout, interval))


@main.command("list")
@click.option("--status", help="Only batches with this status.")
@click.option("--provider", help="Only batches of this provider.")
@click.option("--reference", help="Only batches with this clientReference.")
@click.option(
    "--limit", default=25, show_default=True, type=click.IntRange(1, 10_000), help="At most this many."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_settings
def list_(
    settings: Settings,
    status: str | None,
    provider: str | None,
    reference: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List batches, newest first."""
    with one_line_errors():
        items = list(
            settings.client.list_batches(
                status=status, provider=provider, client_reference=reference, limit=limit
            )
        )
    if as_json:
        for item in items:
            out.print(json.dumps(item), highlight=False, soft_wrap=True)
        return
    table = Table("batch", "status", "provider", "jobs", "reference", "created")
    for item in items:
        table.add_row(
            item["batchId"], item["status"], item["provider"], str(item["jobCount"]),
            item.get("clientReference") or "", item["createdAt"],
        )  # fmt: skip
    out.print(table)


@main.command()
@click.argument("batch_id")
@click.option("--outcome", type=click.Choice(OUTCOMES), help="Only outcomes of this kind, each with its job.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write here (default: stdout).",
)
@click.option(
    "--jobs", "jobs_only", is_flag=True, help="Write only each job as submitted: a file to fix and resubmit."
)
@pass_settings
def results(
    settings: Settings, batch_id: str, outcome: str | None, output: Path | None, jobs_only: bool
) -> None:
    """Download a finished batch's outcomes as JSON Lines.

    \b
    batchbridge results 7c9e... --outcome failed --output failed.jsonl
    batchbridge results 7c9e... --outcome failed --jobs --output to-fix.jsonl
    """
    with one_line_errors():
        if output is not None:
            count = settings.client.download_results(batch_id, output, outcome=outcome, jobs_only=jobs_only)
            err.print(f"{count} outcome(s) written to {output}", highlight=False)
            return
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            spooled = Path(folder) / "results.jsonl"
            settings.client.download_results(batch_id, spooled, outcome=outcome, jobs_only=jobs_only)
            with spooled.open("rb") as handle:
                for piece in iter(lambda: handle.read(1 << 16), b""):
                    sys.stdout.buffer.write(piece)
            sys.stdout.buffer.flush()


@main.command()
@click.argument("batch_id")
@click.option(
    "--outcomes", default="failed,not_processed", show_default=True, help="Which jobs to run again."
)
@click.option("--reference", help="clientReference of the new batch.")
@click.option("--wait", "wait_", is_flag=True, help="Follow the new batch to its end.")
@waiting_options
@pass_settings
def retry(
    settings: Settings,
    batch_id: str,
    outcomes: str,
    reference: str | None,
    wait_: bool,
    timeout: float,
    interval: float,
) -> None:
    """Run the jobs of a finished batch that failed (or were not processed) again, as a new linked batch."""
    kinds = tuple(k.strip() for k in outcomes.split(",") if k.strip())
    if not kinds or set(kinds) - set(OUTCOMES):
        raise click.BadParameter(f"a comma-separated list of {', '.join(OUTCOMES)}", param_hint="--outcomes")
    with one_line_errors():
        accepted = settings.client.retry(batch_id, outcomes=kinds, client_reference=reference)
        err.print(f"retrying {accepted.get('jobCount', '?')} job(s) of {batch_id}", highlight=False)
        out.print(accepted["batchId"], highlight=False)
        if wait_:
            _ended(_follow(settings.client, accepted["batchId"], timeout, interval))


@main.command()
@click.argument("batch_id")
@pass_settings
def cancel(settings: Settings, batch_id: str) -> None:
    """Cancel a running batch (it ends CANCELLED, every job with an outcome)."""
    with one_line_errors():
        answer = settings.client.cancel(batch_id)
    out.print(f"batch {batch_id} {answer['status']}", highlight=False)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON.")
@pass_settings
def providers(settings: Settings, as_json: bool) -> None:
    """List the providers and what each supports."""
    with one_line_errors():
        found = settings.client.providers()
    if as_json:
        _print_json(found)
        return
    table = Table("provider", "title", "jobs per batch", "per submit", "callback", "cancel")
    for p in found:
        table.add_row(
            p["name"], p["title"], str(p["maxJobsPerBatch"]), str(p["maxJobsPerSubmit"]),
            "yes" if p["supportsCallback"] else "no", "yes" if p["supportsCancel"] else "no",
        )  # fmt: skip
    out.print(table)


@main.group()
def local() -> None:
    """The whole stack on this machine (needs `pip install -e '.[local]'`)."""


@local.command()
@click.option(
    "--port",
    default=3000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="API port (0: any free port).",
)
@click.option(
    "--s3-port", default=0, type=click.IntRange(0, 65535), help="Port for S3 on loopback (0: any free port)."
)
@click.option(
    "--job-seconds",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0.05, 600),
    help="How long the simulated vendors take per job run.",
)
@click.option(
    "--project-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    envvar="BATCHBRIDGE_PROJECT_DIR",
    help="The checkout holding template.yaml [env BATCHBRIDGE_PROJECT_DIR].",
)
def serve(port: int, s3_port: int, job_seconds: float, project_dir: Path | None) -> None:
    """Keep the local stack and the four vendor simulators up on loopback until Ctrl-C.

    Prints the API URL; registers the connections ivvy-local, willsuite-local, superoffice-local and
    os1-local. Every other command works against it.
    """
    serve_forever = _local_runtime("serve").serve_forever
    serve_forever(
        port=port, s3_port=s3_port, job_seconds=job_seconds, project_dir=project_dir, console=err, out=out
    )


@local.command("invoke")
@click.argument("function")
@click.argument("event", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--project-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    envvar="BATCHBRIDGE_PROJECT_DIR",
    help="The checkout holding template.yaml [env BATCHBRIDGE_PROJECT_DIR].",
)
def invoke(function: str, event: Path, project_dir: Path | None) -> None:
    """Run the EVENT file through FUNCTION's real handler on a fresh local stack, after making what the
    event names (its batch, in the state its task expects; its upload; its callback token) with the
    event's own ids. Prints the handler's answer, as `sam local invoke` does.

    FUNCTION is a logical id of template.yaml or the function's folder (as under events/).
    Exit codes: 0 answered, 1 the handler raised, 2 a usage error, 3 what the event names could not be made.

    \b
    batchbridge local invoke CheckStatusFunction events/check_status/poll.json
    batchbridge local invoke api events/api/get_results_page.json
    """
    main = _local_runtime("invoke").main
    sys.exit(main(function, event, project_dir=project_dir, console=err))


def _local_runtime(module: str) -> Any:
    """``batchbridge_local.<module>``, or one line saying the local stack is not installed."""
    import importlib

    try:
        import batchbridge_local.stack  # noqa: F401 - moto, Powertools, PyYAML: the [local] extra

        return importlib.import_module(f"batchbridge_local.{module}")
    except ImportError as exc:
        err.print(
            f"error: the local stack is not installed ({exc.name} missing): pip install -e '.[local]'",
            markup=False,
        )
        sys.exit(EXIT_ERROR)
