"""Checks that two headsweep result files hold the same results: the same
groups and datasets with the same shapes, dtypes and attributes, and every
value bit for bit equal (NaN where NaN). Root attributes must name the same
keys, except merged_shards, which only a merged file has; their values may
differ only where a run records when and how it ran (created_utc, config,
config_sha256).
Usage: compare_h5.py EXPECTED.h5 ACTUAL.h5 (exit 0 when equal, else 1 with a
message naming the first differing object).

Exact equality is the engine's promise: every unit of work computes the same
bits in any shard, and reductions run over prompts in order when a file is
written (docs/design-notes.md)."""
import sys

import h5py
import numpy as np

RUN_ATTRS = {"created_utc", "config", "config_sha256"}
MERGE_ATTRS = {"merged_shards"}
REF_ATTRS = {"DIMENSION_LIST", "REFERENCE_LIST"}  # object references, file-specific


def fail(msg):
    print(f"compare_h5: {msg}", file=sys.stderr)
    sys.exit(1)


def objects(f):
    found = {}
    f.visititems(lambda name, obj: found.__setitem__(name, obj))
    return found


def same_value(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def compare_attrs(where, ea, aa, skip):
    if set(ea) - MERGE_ATTRS != set(aa) - MERGE_ATTRS:
        fail(f"{where}: attributes differ: {sorted((set(ea) ^ set(aa)) - MERGE_ATTRS)}")
    for k in sorted(ea):
        if k not in skip and k not in MERGE_ATTRS and not same_value(ea[k], aa[k]):
            fail(f"{where}: attribute '{k}' differs: {ea[k]!r} vs {aa[k]!r}")


def main():
    if len(sys.argv) != 3:
        fail("usage: compare_h5.py EXPECTED.h5 ACTUAL.h5")
    with h5py.File(sys.argv[1], "r") as fe, h5py.File(sys.argv[2], "r") as fa:
        compare_attrs("/", fe.attrs, fa.attrs, RUN_ATTRS)
        oe, oa = objects(fe), objects(fa)
        if set(oe) != set(oa):
            fail(f"objects only in one file: {sorted(set(oe) ^ set(oa))}")
        n = 0
        for name in sorted(oe):
            e, a = oe[name], oa[name]
            if type(e) is not type(a):
                fail(f"{name}: a {type(e).__name__} in one file, a {type(a).__name__} in the other")
            compare_attrs(name, e.attrs, a.attrs, REF_ATTRS)
            if isinstance(e, h5py.Dataset):
                if e.shape != a.shape or e.dtype != a.dtype:
                    fail(f"{name}: {e.shape} {e.dtype} vs {a.shape} {a.dtype}")
                ev, av = e[()], a[()]
                if not same_value(ev, av):
                    msg = f"{name}: values differ"
                    if ev.dtype.kind == "f":
                        d = np.abs(ev.astype(np.float64) - av)
                        i = np.unravel_index(np.nanargmax(d), d.shape) if d.ndim else ()
                        msg += f" (largest at {tuple(int(x) for x in i)}: {ev[i]} vs {av[i]})"
                    fail(msg)
                n += 1
    print(f"compare_h5: {sys.argv[2]} equals {sys.argv[1]} ({n} datasets)")


if __name__ == "__main__":
    main()
