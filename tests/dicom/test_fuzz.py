"""Seeded mutation fuzzing over pydicom's test files.

Each mutant goes through the real pipeline (header scan in workers, series
assembly, load). Zero crashes of this process, zero hangs past the per-file
timeout, zero untyped exceptions reaching the caller. Bounded by a time budget
(MEDSTATION_FUZZ_SECONDS, default 40) so it fits CI.
"""

import os
import random
import time

import numpy as np

from medstation.core.errors import LoadError
from medstation.dicom import WorkerPool, assemble, load_stack, scan
from medstation.dicom.header import InstanceHeader
from tests.conftest import PYDICOM_TEST_FILES

SEEDS = sorted(p for p in PYDICOM_TEST_FILES.glob("*.dcm") if p.stat().st_size < 2_000_000)
TIMEOUT = 5.0


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:  # flip bytes
        for _ in range(rng.randint(1, 20)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 1:  # truncate
        b = b[: rng.randrange(1, len(b))]
    elif kind == 2:  # a huge or odd length field somewhere after the preamble
        pos = rng.randrange(132, max(133, len(b) - 4))
        b[pos:pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\xfe\xff\xff\x7f", b"\x00\x00\x00\x80",
                                     b"\x01\x00\x00\x00"])
    elif kind == 3:  # duplicate a chunk
        i = rng.randrange(len(b))
        j = min(len(b), i + rng.randint(1, 400))
        b[i:i] = b[i:j]
    elif kind == 4:  # zero a region
        i = rng.randrange(len(b))
        b[i:i + rng.randint(1, 200)] = bytes(min(200, len(b) - i))
    else:  # change image attributes to extreme values
        for tag in (b"\x28\x00\x10\x00", b"\x28\x00\x11\x00", b"\x28\x00\x08\x00", b"\x28\x00\x00\x01"):
            i = b.find(tag)
            if i >= 0 and rng.random() < 0.6:
                vr_len = 8 if b[i + 4:i + 6].isalpha() else 8
                b[i + vr_len:i + vr_len + 2] = rng.choice([b"\xff\xff", b"\x00\x00", b"\x01\x00"])
    return bytes(b)


def test_mutation_fuzz(tmp_path):
    budget = float(os.environ.get("MEDSTATION_FUZZ_SECONDS", "40"))
    rng = random.Random(20261121)
    originals = [(p.name, p.read_bytes()) for p in SEEDS]
    stats = {"mutants": 0, "loaded_slices": 0, "errors": 0}
    t_end = time.monotonic() + budget
    with WorkerPool(2, timeout=TIMEOUT, memory_cap=1024**3) as pool:
        n = 0
        while time.monotonic() < t_end:
            batch = []
            for _ in range(16):
                name, data = rng.choice(originals)
                path = tmp_path / f"m{n:05d}_{name}"
                path.write_bytes(mutate(data, rng))
                batch.append(str(path))
                n += 1
            t0 = time.monotonic()
            try:
                result = scan(batch, pool)
                assert all(isinstance(h, InstanceHeader) for h in result.headers)
                assert all(isinstance(e, LoadError) for e in result.errors + result.skipped)
                for stack in assemble(result.headers):
                    res = load_stack(stack, pool)
                    assert all(isinstance(e, LoadError) for e in res.errors)
                    assert isinstance(res.volume.voxels, np.ndarray)
                    stats["loaded_slices"] += len(stack.slices) - len(res.errors)
                    stats["errors"] += len(res.errors)
                stats["errors"] += len(result.errors)
            except LoadError:
                pass  # a typed error reaching the caller is allowed
            except Exception as exc:  # pragma: no cover - this is the failure we hunt
                raise AssertionError(f"untyped {type(exc).__name__} from mutants {batch}: {exc}") from exc
            elapsed = time.monotonic() - t0
            # 16 files, each bounded by the timeout (scan, its retry alone, then decode)
            assert elapsed < 16 * 3 * TIMEOUT + 10, f"batch took {elapsed:.1f} s"
            stats["mutants"] += len(batch)
            for p in batch:
                os.unlink(p)
    print(f"fuzz: {stats}")
    assert stats["mutants"] >= 32
    assert stats["loaded_slices"] > 0 and stats["errors"] > 0
