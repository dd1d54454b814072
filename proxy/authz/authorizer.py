"""Authorization as sources. Each source answers one question — may this identity use this verb in
this tenant? — with a grant, no opinion, or an error (it could not tell). Sources are combined as a
union: any grant allows; otherwise the request is denied with every source's reason. An error never
allows: it counts as no grant, and when *every* source errored nobody could decide, so the answer is
"unavailable" (503: try again), still a refusal. Sources that can answer without I/O are asked first,
and a grant there spares the others.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..model import Identity, Route, Target, Verb

if TYPE_CHECKING:
    from ..jobs.ownership import JobRef

log = logging.getLogger("ray_iap_proxy.authz")


class Opinion(enum.Enum):
    GRANT = "grant"
    NONE = "none"  # no opinion: this source does not grant it
    ERROR = "error"  # this source could not tell (down, slow, unreadable)


@dataclass(frozen=True, slots=True)
class Question:
    identity: Identity
    tenant: str
    verb: Verb
    route: Route | None = None
    target: Target | None = None
    job: JobRef | None = None  # the job the route names; its owner is looked up only when asked


@dataclass(frozen=True, slots=True)
class Answer:
    source: str
    opinion: Opinion
    reason: str


class Source(Protocol):
    name: str
    local: bool  # answers from memory, without I/O

    async def decide(self, question: Question) -> Answer: ...


@dataclass(frozen=True, slots=True)
class Decision:
    granted: bool
    unavailable: bool  # nobody could decide: every source errored
    reason: str
    source: str  # the granting source, or every source asked, comma-separated
    answers: tuple[Answer, ...]


class Union:
    """Any source's grant allows. Deny by default: no sources at all grants nothing."""

    def __init__(self, sources: Sequence[Source], timeout_seconds: float = 5.0) -> None:
        self.sources = tuple(sorted(sources, key=lambda s: not s.local))  # local ones first
        self.timeout = timeout_seconds

    async def decide(self, question: Question) -> Decision:
        answers: list[Answer] = []
        local = [s for s in self.sources if s.local]
        remote = [s for s in self.sources if not s.local]
        for source in local:
            answers.append(await self._ask(source, question))
            if answers[-1].opinion is Opinion.GRANT:
                return _granted(answers[-1], answers)
        if remote:
            answers += await asyncio.gather(*(self._ask(s, question) for s in remote))
            for answer in answers:
                if answer.opinion is Opinion.GRANT:
                    return _granted(answer, answers)
        if not answers:
            return Decision(False, False, "no policy source is configured: nothing is granted", "", ())
        errored = all(a.opinion is Opinion.ERROR for a in answers)
        reason = (
            answers[0].reason if len(answers) == 1 else "; ".join(f"{a.source}: {a.reason}" for a in answers)
        )
        return Decision(False, errored, reason, ",".join(a.source for a in answers), tuple(answers))

    async def _ask(self, source: Source, question: Question) -> Answer:
        try:
            if source.local:  # answers from memory: no timer to arm and cancel per request
                return await source.decide(question)
            async with asyncio.timeout(self.timeout):
                return await source.decide(question)
        except TimeoutError:
            log.warning("policy source %s timed out after %g s: it grants nothing", source.name, self.timeout)
            return Answer(
                source.name, Opinion.ERROR, f"{source.name} did not answer within {self.timeout:g} s"
            )
        except Exception as exc:  # a source that fails grants nothing, and says so
            log.warning("policy source %s failed (%s): it grants nothing", source.name, type(exc).__name__)
            return Answer(source.name, Opinion.ERROR, f"{source.name} failed ({type(exc).__name__})")


def _granted(answer: Answer, answers: list[Answer]) -> Decision:
    return Decision(True, False, answer.reason, answer.source, tuple(answers))
