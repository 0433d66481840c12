"""Gearman binary packet numbers and argument counts (gearmand 1.1.20's PROTOCOL, checked on the wire).

Each packet body holds a fixed number of arguments separated by single NUL bytes; the last one runs to
the end of the body and may itself contain NULs (payloads). ARG_COUNT says how many each type carries,
so the codec splits with ``maxsplit = count - 1`` and never looks past a packet's declared size.
"""

from __future__ import annotations

from enum import IntEnum

REQ = b"\x00REQ"
RES = b"\x00RES"
HEADER_SIZE = 12


class Packet(IntEnum):
    TEXT = 0  # internal: an admin text line (never a valid wire type)
    CAN_DO = 1
    CANT_DO = 2
    RESET_ABILITIES = 3
    PRE_SLEEP = 4
    NOOP = 6
    SUBMIT_JOB = 7
    JOB_CREATED = 8
    GRAB_JOB = 9
    NO_JOB = 10
    JOB_ASSIGN = 11
    WORK_STATUS = 12
    WORK_COMPLETE = 13
    WORK_FAIL = 14
    GET_STATUS = 15
    ECHO_REQ = 16
    ECHO_RES = 17
    SUBMIT_JOB_BG = 18
    ERROR = 19
    STATUS_RES = 20
    SUBMIT_JOB_HIGH = 21
    SET_CLIENT_ID = 22
    CAN_DO_TIMEOUT = 23
    ALL_YOURS = 24
    WORK_EXCEPTION = 25
    OPTION_REQ = 26
    OPTION_RES = 27
    WORK_DATA = 28
    WORK_WARNING = 29
    GRAB_JOB_UNIQ = 30
    JOB_ASSIGN_UNIQ = 31
    SUBMIT_JOB_HIGH_BG = 32
    SUBMIT_JOB_LOW = 33
    SUBMIT_JOB_LOW_BG = 34
    SUBMIT_JOB_SCHED = 35
    SUBMIT_JOB_EPOCH = 36
    SUBMIT_REDUCE_JOB = 37
    SUBMIT_REDUCE_JOB_BACKGROUND = 38
    GRAB_JOB_ALL = 39
    JOB_ASSIGN_ALL = 40
    GET_STATUS_UNIQUE = 41
    STATUS_RES_UNIQUE = 42


#: The first type number that does not exist (gearmand closes the connection on it and on 0).
MAX_TYPE = 43

#: Arguments per packet type. Type 5 was never assigned: it carries an opaque body.
ARG_COUNT: dict[int, int] = {
    Packet.CAN_DO: 1,
    Packet.CANT_DO: 1,
    Packet.RESET_ABILITIES: 0,
    Packet.PRE_SLEEP: 0,
    5: 1,
    Packet.NOOP: 0,
    Packet.SUBMIT_JOB: 3,
    Packet.JOB_CREATED: 1,
    Packet.GRAB_JOB: 0,
    Packet.NO_JOB: 0,
    Packet.JOB_ASSIGN: 3,
    Packet.WORK_STATUS: 3,
    Packet.WORK_COMPLETE: 2,
    Packet.WORK_FAIL: 1,
    Packet.GET_STATUS: 1,
    Packet.ECHO_REQ: 1,
    Packet.ECHO_RES: 1,
    Packet.SUBMIT_JOB_BG: 3,
    Packet.ERROR: 2,
    Packet.STATUS_RES: 5,
    Packet.SUBMIT_JOB_HIGH: 3,
    Packet.SET_CLIENT_ID: 1,
    Packet.CAN_DO_TIMEOUT: 2,
    Packet.ALL_YOURS: 0,
    Packet.WORK_EXCEPTION: 2,
    Packet.OPTION_REQ: 1,
    Packet.OPTION_RES: 1,
    Packet.WORK_DATA: 2,
    Packet.WORK_WARNING: 2,
    Packet.GRAB_JOB_UNIQ: 0,
    Packet.JOB_ASSIGN_UNIQ: 4,
    Packet.SUBMIT_JOB_HIGH_BG: 3,
    Packet.SUBMIT_JOB_LOW: 3,
    Packet.SUBMIT_JOB_LOW_BG: 3,
    Packet.SUBMIT_JOB_SCHED: 8,
    Packet.SUBMIT_JOB_EPOCH: 4,
    Packet.SUBMIT_REDUCE_JOB: 5,
    Packet.SUBMIT_REDUCE_JOB_BACKGROUND: 5,
    Packet.GRAB_JOB_ALL: 0,
    Packet.JOB_ASSIGN_ALL: 5,
    Packet.GET_STATUS_UNIQUE: 1,
    Packet.STATUS_RES_UNIQUE: 6,
}

#: ARG_COUNT as a list indexed by type, for the decoder's hot loop.
ARG_COUNT_BY_TYPE: list[int] = [ARG_COUNT.get(t, 0) for t in range(MAX_TYPE)]


def packet_name(ptype: int) -> str:
    try:
        return Packet(ptype).name
    except ValueError:
        return f"TYPE_{ptype}"
