"""The local runtime runs a function as Lambda does: one invocation at a time per container, a new
container for an invocation that arrives while the others are busy."""

from __future__ import annotations

import threading
from pathlib import Path

from batchbridge_local.stack import LocalFunction

HANDLER = """
import time

current = None  # per-invocation state at module level, as Powertools' resolver keeps its event


def handler(event, context):
    global current
    current = event
    event["started"].set()
    event["go"].wait(5)
    return current["n"]
"""


def function(tmp_path: Path) -> LocalFunction:
    (tmp_path / "app.py").write_text(HANDLER)
    return LocalFunction("Fn", "fn", tmp_path, "app.handler", timeout=10, environment={})


def test_invocations_at_the_same_time_run_in_containers_of_their_own(tmp_path):
    fn = function(tmp_path)
    go = threading.Event()
    events = [{"n": n, "started": threading.Event(), "go": go} for n in range(2)]
    answers: dict[int, int] = {}
    threads = [threading.Thread(target=lambda e=e: answers.update({e["n"]: fn.invoke(e)})) for e in events]
    # Given a first invocation under way, When a second arrives before it has ended
    threads[0].start()
    assert events[0]["started"].wait(5)
    threads[1].start()
    assert events[1]["started"].wait(5)
    go.set()
    for thread in threads:
        thread.join(5)
    # Then neither saw the other's event
    assert answers == {0: 0, 1: 1}


def test_a_container_is_used_again_once_idle(tmp_path):
    fn = function(tmp_path)
    go = threading.Event()
    go.set()
    for n in range(3):
        assert fn.invoke({"n": n, "started": threading.Event(), "go": go}) == n
    assert fn._containers == 1


#: Each request's pair of events (started, go), shared by every container of the function below.
GATES: dict[str, tuple[threading.Event, threading.Event]] = {}

RESOLVER = """
from aws_lambda_powertools.event_handler import APIGatewayRestResolver

import sys

gates = sys.modules[TEST_MODULE].GATES

app = APIGatewayRestResolver()


@app.post("/echo")
def echo():
    name = app.current_event.json_body["name"]
    started, go = gates[name]
    started.set()
    go.wait(1)
    return {"name": app.current_event.json_body["name"]}


def handler(event, context):
    return app.resolve(event, context)
"""


def test_invocations_of_a_function_on_powertools_event_handler_do_not_see_each_others_event(tmp_path):
    # Powertools keeps the event being resolved on a class every resolver in the process shares
    from batchbridge_local.stack import proxy_event

    (tmp_path / "app.py").write_text(RESOLVER.replace("TEST_MODULE", repr(__name__)))
    fn = LocalFunction("Api", "api", tmp_path, "app.handler", timeout=10, environment={})
    answers: dict[str, str] = {}

    def call(name: str) -> None:
        event = proxy_event("POST", "/echo", body=f'{{"name": "{name}"}}')
        answers[name] = fn.invoke(event)["body"]

    for name in ("first", "second"):
        GATES[name] = (threading.Event(), threading.Event())
    # Given a first invocation under way, When a second arrives before it has ended
    threads = {n: threading.Thread(target=call, args=(n,)) for n in ("first", "second")}
    threads["first"].start()
    assert GATES["first"][0].wait(5)
    threads["second"].start()
    GATES["second"][0].wait(0.5)  # one at a time: the second starts only once the first has ended
    GATES["first"][1].set()
    GATES["second"][1].set()
    for thread in threads.values():
        thread.join(10)
    # Then each answer is about its own request
    assert answers == {"first": '{"name":"first"}', "second": '{"name":"second"}'}
