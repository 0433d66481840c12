"""What happens to a background job that its worker failed (WORK_FAIL / WORK_EXCEPTION).

gearmand drops it (its issue #251). Here a policy per function can run it again after a back-off, and
keep it in a dead-letter list once the tries are used up, for an operator to requeue or delete.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 0  # further attempts after a failure; 0 = gearmand's behaviour (none)
    backoff: float = 1.0  # seconds before the first retry
    factor: float = 2.0  # each further retry waits this many times longer
    max_backoff: float = 300.0
    dead_letter: bool = False  # after the last try: keep it in the dead-letter list (else drop it)

    def delay(self, failure_number: int) -> float:
        try:
            return min(self.backoff * self.factor ** max(0, failure_number - 1), self.max_backoff)
        except OverflowError:  # a long run of failures: the cap applies
            return self.max_backoff


@dataclass
class RetryPolicies:
    default: RetryPolicy = field(default_factory=RetryPolicy)
    functions: dict[bytes, RetryPolicy] = field(default_factory=dict)

    def for_function(self, name: bytes) -> RetryPolicy:
        return self.functions.get(name, self.default)
