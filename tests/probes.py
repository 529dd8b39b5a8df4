"""Probe classes for tests, named in ``HEALTH_CHECKS`` through ``override_settings`` as a project names its own."""

from __future__ import annotations

import threading

GATES: dict[str, threading.Event] = {}


class GateProbe:
    """Answers once its gate is open (``GATES[gate].set()``); until then it hangs like a black-holed service.

    ``interrupt()`` cannot free it, as with a probe still connecting: there is nothing to cut yet.
    """

    def __init__(self, gate: str) -> None:
        self.gate = GATES.setdefault(gate, threading.Event())

    def run(self, timeout: float) -> dict[str, int]:
        if not self.gate.wait(30):
            raise TimeoutError("the gate never opened")
        return {"gate_open": 1}

    def interrupt(self) -> None:
        pass
