"""Where CPython delivers a KeyboardInterrupt, for the tests that raise one at every such point of a piece of
code (a line-by-line sweep raises at places a real Ctrl-C never reaches)."""

from __future__ import annotations


def interruptible_offsets(code) -> frozenset[int]:
    """Where CPython delivers a KeyboardInterrupt (a signal or an async exception) in ``code``.

    The interpreter looks at its "eval breaker" only at a function's start (RESUME), on a backward jump and
    after a call returns; a real Ctrl-C therefore lands just before one of these instructions. (A
    line-by-line sweep raises at places a real interrupt never reaches, such as between a ``with`` block's
    last line and its ``__exit__`` call.) Python-to-Python calls are included, which is more than CPython
    checks: the sweep may only err on the side of more interrupts.
    """
    import dis

    points, after_call = set(), False
    for ins in dis.get_instructions(code):
        if after_call or ins.opname in ("RESUME", "JUMP_BACKWARD"):
            points.add(ins.offset)
        after_call = ins.opname.startswith("CALL")
    return frozenset(points)
