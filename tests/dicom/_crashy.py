"""Task functions that misbehave on purpose, run inside loader workers by the tests."""

import os
import signal
import time


def ok(x):
    return x * 2


def hang(x):
    if x == "hang":
        time.sleep(3600)
    return x


def segfault(x):
    if x == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    return x


def allocate(x):
    if x == "bomb":
        blob = bytearray(8 * 1024**3)  # over the worker's memory cap
        return len(blob)
    return x


def raise_untyped(x):
    raise KeyError(f"bad {x}")
