"""Ad-hoc commands (XEP-0050) for clients with forms: the forms as data, and their submitted values parsed
into the same commands a chat message gives (``grammar``), so both paths share one set of rules.

Three commands: ``functions`` (no form: it runs at once), ``submit`` (function, payload, priority,
background) and ``status`` (a handle). The adapter turns each ``CommandForm`` into a XEP-0004 form of type
``form``, registers ``node`` under ``name`` with XEP-0050, and hands the submitted form's values
(slixmpp's ``form.get_values()``: str, bool, or a list of str for text-multi) to ``ChatCommands.adhoc``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gearman_gateway.scheduler import Priority
from protocols.xmpp import grammar
from protocols.xmpp.grammar import BadCommand, Command, JobCommand, ListCommand, StatusCommand

NODE_FUNCTIONS = "functions"
NODE_SUBMIT = "submit"
NODE_STATUS = "status"

_PRIORITIES = {"high": Priority.HIGH, "normal": Priority.NORMAL, "low": Priority.LOW}
_TRUE = frozenset(("1", "true", "yes", "on"))
_FALSE = frozenset(("0", "false", "no", "off", ""))


@dataclass(frozen=True, slots=True)
class Option:
    label: str
    value: str


@dataclass(frozen=True, slots=True)
class FormField:
    """One XEP-0004 field: ``ftype`` is ``text-single``, ``text-multi``, ``list-single`` or ``boolean``."""

    var: str
    ftype: str
    label: str
    required: bool = False
    desc: str = ""
    value: str | bool | None = None  # the default shown
    options: tuple[Option, ...] = ()


@dataclass(frozen=True, slots=True)
class CommandForm:
    """An ad-hoc command: its node and name (as listed by disco), and its form (no fields: no form, it
    runs as soon as it is executed)."""

    node: str
    name: str
    title: str
    instructions: str
    fields: tuple[FormField, ...] = ()


LIST_FUNCTIONS = CommandForm(
    node=NODE_FUNCTIONS,
    name="List functions",
    title="Functions",
    instructions="Every function with its queued and running jobs and its workers.",
)

SUBMIT_JOB = CommandForm(
    node=NODE_SUBMIT,
    name="Submit a job",
    title="Submit a Gearman job",
    instructions="A foreground job answers with its result; a background job with its handle.",
    fields=(
        FormField("function", "text-single", "Function", required=True, desc="The Gearman function to run"),
        FormField("payload", "text-multi", "Payload", desc="The job's workload, as written"),
        FormField(
            "priority",
            "list-single",
            "Priority",
            value="normal",
            options=(Option("High", "high"), Option("Normal", "normal"), Option("Low", "low")),
        ),
        FormField("background", "boolean", "Background", value=False, desc="Queue it and answer with its handle"),
    ),
)

JOB_STATUS = CommandForm(
    node=NODE_STATUS,
    name="Job status",
    title="Job status",
    instructions="Whether the job is known and running, and its progress.",
    fields=(FormField("handle", "text-single", "Job handle", required=True, desc="As H:host:123"),),
)

#: Every command, in the order clients list them.
COMMANDS: tuple[CommandForm, ...] = (LIST_FUNCTIONS, SUBMIT_JOB, JOB_STATUS)


def parse_values(node: str, values: Mapping[str, object]) -> Command:
    """The command a submitted form asks for; ``BadCommand`` says what is wrong with the values."""
    if node == NODE_FUNCTIONS:
        return ListCommand()
    if node == NODE_STATUS:
        handle = grammar.check_handle(_text(values.get("handle")).strip())
        return handle if isinstance(handle, BadCommand) else StatusCommand(handle)
    if node == NODE_SUBMIT:
        return _submit(values)
    return BadCommand(f"unknown command {node[:80]!r}")


def _submit(values: Mapping[str, object]) -> Command:
    function = grammar.check_function(_text(values.get("function")).strip())
    if isinstance(function, BadCommand):
        return function
    priority = _PRIORITIES.get(_text(values.get("priority")).strip().lower() or "normal")
    if priority is None:
        return BadCommand("priority must be high, normal or low")
    background = _flag(values.get("background"))
    if background is None:
        return BadCommand("background must be true or false")
    try:
        payload = _text(values.get("payload")).encode()
    except UnicodeEncodeError:
        return BadCommand("the payload is not valid text")
    return JobCommand(function, payload, priority, background)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "\n".join(str(item) for item in value)
    return str(value)


def _flag(value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return bool(value)
    text = _text(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None
