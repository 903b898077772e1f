"""``batchbridge local serve``: the local stack and the four vendor simulators, up on loopback until
stopped, as ``sam local start-api`` is for a SAM application.

The API is served on ``http://127.0.0.1:<port>/v1`` and S3 on another loopback port, so pre-signed upload
and download URLs work from any process on the machine. One connection per provider is registered
(``ivvy-local``, ``willsuite-local``, ``superoffice-local``, ``os1-local``), each pointing at its simulator.
"""

from __future__ import annotations

import signal
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from batchbridge_local.simulators.base import Simulator
from batchbridge_local.simulators.ivvy import IvvySimulator
from batchbridge_local.simulators.os1 import OS1Simulator
from batchbridge_local.simulators.superoffice import SuperOfficeSimulator
from batchbridge_local.simulators.willsuite import WillSuiteSimulator

CONNECTIONS = {
    "ivvy": "ivvy-local",
    "willsuite": "willsuite-local",
    "superoffice": "superoffice-local",
    "os1": "os1-local",
}


def simulators(job_seconds: float) -> dict[str, Simulator]:
    """One simulator per provider (not started), each taking ``job_seconds`` per job run."""
    return {
        "ivvy": IvvySimulator(job_seconds=job_seconds),
        "willsuite": WillSuiteSimulator(job_seconds=job_seconds),
        "superoffice": SuperOfficeSimulator(job_seconds=job_seconds),
        "os1": OS1Simulator(batch_seconds=job_seconds),
    }


def connect(stack: Any, provider: str, sim: Any, name: str | None = None) -> str:
    """Register a connection of ``provider`` to its running simulator ``sim``; returns its name."""
    name = name or CONNECTIONS[provider]
    if provider == "ivvy":
        stack.add_connection(name, "ivvy", sim.base_url, {"apiKey": sim.api_key, "apiSecret": sim.api_secret})
    elif provider == "willsuite":
        credentials = {"clientId": sim.client_id, "clientSecret": sim.client_secret}
        stack.add_connection(name, "willsuite", sim.api_base_url, credentials)
    elif provider == "superoffice":
        credentials = {"ticket": sim.ticket, "appToken": sim.app_token}
        stack.add_connection(
            name, "superoffice", sim.base_url, credentials, {"contextIdentifier": sim.context_identifier}
        )
    elif provider == "os1":
        # OS1 takes batch writes only with the origin token (X-COREOS-ORIGIN-TOKEN)
        credentials = {
            "clientId": sim.client_id,
            "clientSecret": sim.client_secret,
            "originToken": sim.origin_token,
        }
        stack.add_connection(name, "os1", sim.base_url, credentials, {"tenantId": sim.tenant_id})
    else:
        raise ValueError(f"no simulator for provider {provider!r}")
    return name


def serve_forever(
    *,
    port: int = 3000,
    s3_port: int = 0,
    job_seconds: float = 2.0,
    project_dir: Path | None = None,
    console: Any = None,
    out: Any = None,
    stop: threading.Event | None = None,
) -> None:
    """Start everything, print where it is, and keep it up until SIGINT/SIGTERM (or ``stop`` is set).
    The first line on ``out`` is ``BATCHBRIDGE_API_URL=<url>``, for scripts."""
    from rich.console import Console

    from batchbridge_local import template
    from batchbridge_local.stack import LocalStack

    console = console or Console(stderr=True)
    out = out or Console()
    stop = stop or threading.Event()
    root = project_dir or template.ROOT
    with ExitStack() as running:
        sims = simulators(job_seconds)
        for sim in sims.values():
            running.enter_context(sim)
        stack = running.enter_context(
            LocalStack(serve_s3=True, api_port=port, s3_port=s3_port, template_path=root / "template.yaml")
        )
        for provider, sim in sims.items():
            connect(stack, provider, sim)
        out.print(f"BATCHBRIDGE_API_URL={stack.api_url}", highlight=False, soft_wrap=True)
        out.file.flush()
        console.print(f"[bold green]BatchBridge local stack is up[/] ({root / 'template.yaml'})")
        console.print(f"  API          {stack.api_url}   (no credentials needed)")
        console.print(f"  S3           {stack.s3_url}")
        for provider, sim in sims.items():
            console.print(f"  {CONNECTIONS[provider]:<18} -> {provider} simulator on {sim.base_url}")
        console.print(f"  export BATCHBRIDGE_API_URL={stack.api_url}   then e.g.  batchbridge providers")
        console.print("Ctrl-C stops it; everything it held is gone then.")
        main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
        signals = (signal.SIGINT, signal.SIGTERM) if main_thread else ()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in signals}
        try:
            while not stop.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            console.print("stopping")
