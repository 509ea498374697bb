"""Shared pieces of the property tests: the property itself and a guard against hangs."""

from __future__ import annotations

import contextlib
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from videoattn.errors import VideoAttnError

#: Outcomes per property, printed by ``-s`` runs and summarised in docs/reliability.md.
OUTCOMES: dict[str, Counter] = {}


class Hang(Exception):
    pass


@contextlib.contextmanager
def no_hang(seconds: int = 20):
    """Fail (instead of hanging the suite) if the body runs longer than ``seconds``."""
    def on_alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def own_error_or_success(name: str, call: Callable[[], Any], names: tuple[str, ...] = ()) -> Any:
    """Run ``call``: it must succeed or raise a videoattn error whose message names one of ``names``
    (the file, key or value at fault). Anything else (another exception, a hang) fails the test."""
    counter = OUTCOMES.setdefault(name, Counter())
    try:
        with no_hang():
            result = call()
    except VideoAttnError as error:
        message = str(error)
        assert message and "\n" not in message.strip(), f"not a one-line message: {message!r}"
        if names:
            assert any(n in message for n in names), f"{type(error).__name__} names none of {names}: {message}"
        counter[type(error).__name__] += 1
        return None
    counter["ok"] += 1
    return result


def no_temporary_files(folder: Path) -> None:
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]
    assert not leftovers, f"half-written files left: {leftovers}"
