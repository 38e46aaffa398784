"""``LocalState``: rate limits in this process's memory (no Redis configured), exact for one process.

The same semantics as the Redis script (``shared.lua``): fixed 60-second windows on
the wall clock, nothing written unless every check fits, the first candidate
deployment that fits is chosen, cache hits reserve no tokens. Leases need no expiry
here: they end with the process that holds them.
"""

from __future__ import annotations

import time

from asgi_llm.shared.limits import PARALLEL, TOKENS, WINDOW, Check, Plan, Verdict


class LocalState:
    """See the module docstring."""

    def __init__(self) -> None:
        self._counters: dict[str, tuple[int, int]] = {}  # key -> (window id, amount)
        self._leases: dict[str, set[str]] = {}

    def admit(self, plan: Plan, lease: str, hit: bool) -> Verdict:
        now = time.time()
        window = int(now // WINDOW)
        reset = (window + 1) * WINDOW - now
        for check in plan.mandatory:
            if not self._fits(check, window, hit):
                others = [c for c in plan.mandatory if c is not check]
                for other in others:  # looked at, for the answer's headers
                    other.used = self._used(other, window)
                return Verdict(False, reset, window, taken=others, failed=check)
        chosen: list[Check] = []
        dep = None
        if plan.candidates and not hit:
            failed = None
            for checks, candidate in zip(plan.candidates, plan.deployments, strict=True):
                bad = next((c for c in checks if not self._fits(c, window, hit)), None)
                if bad is None:
                    chosen, dep = checks, candidate
                    break
                failed = failed or bad
            if dep is None:
                return Verdict(False, reset, window, taken=list(plan.mandatory), failed=failed)
        taken = [*plan.mandatory, *chosen]
        for check in taken:
            self._take(check, window, lease, hit)
        return Verdict(True, reset, window, chosen=dep, taken=taken)

    def _used(self, check: Check, window: int) -> int:
        if check.kind == PARALLEL:
            return len(self._leases.get(check.key, ()))
        win, amount = self._counters.get(check.key, (window, 0))
        return amount if win == window else 0

    def _fits(self, check: Check, window: int, hit: bool) -> bool:
        check.used = self._used(check, window)
        amount = 0 if hit and check.kind == TOKENS else check.amount
        return amount == 0 or check.used + amount <= check.limit

    def _take(self, check: Check, window: int, lease: str, hit: bool) -> None:
        if check.kind == PARALLEL:
            self._leases.setdefault(check.key, set()).add(lease)
            check.used += 1
            return
        amount = 0 if hit and check.kind == TOKENS else check.amount
        if amount:
            self._counters[check.key] = (window, check.used + amount)
            check.used += amount

    def settle(self, lease: str, window: int, changes: list[tuple[Check, int]]) -> None:
        """Free ``lease`` and correct reserved tokens by each delta (only within the window reserved in)."""
        for check, delta in changes:
            if check.kind == PARALLEL:
                held = self._leases.get(check.key)
                if held is not None:
                    held.discard(lease)
                    if not held:
                        del self._leases[check.key]
            elif delta:
                win, amount = self._counters.get(check.key, (-1, 0))
                if win == window:
                    self._counters[check.key] = (window, amount + delta)

    def leases(self, key: str) -> int:
        return len(self._leases.get(key, ()))
