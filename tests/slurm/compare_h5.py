"""Checks that two headsweep result files hold the same results: the same
groups and datasets with the same shapes, dtypes and attributes, integer and
string data equal, float data equal within tolerance. Root attributes must
name the same keys; their values may differ only where a run records when and
how it ran (created_utc, config, config_sha256).
Usage: compare_h5.py EXPECTED.h5 ACTUAL.h5 (exit 0 when equal, else 1 with a
message naming the first differing object).

Float tolerance: |a - e| <= atol + rtol*|e| with rtol = 1e-5 (about 80 f32
ulps) and atol = 1e-6. A sharded run evaluates the same rows in different
batches, so BLAS may pick other kernels and sums over prompts (delta_mean)
run in another order: the last bits may differ, more than that may not."""
import sys

import h5py
import numpy as np

RTOL, ATOL = 1e-5, 1e-6
RUN_ATTRS = {"created_utc", "config", "config_sha256"}
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
        return bool(np.all(np.abs(a - b) <= ATOL + RTOL * np.abs(a)) and np.array_equal(np.isnan(a), np.isnan(b)))
    return bool(np.array_equal(a, b))


def compare_attrs(where, ea, aa, skip):
    if set(ea) != set(aa):
        fail(f"{where}: attributes differ: {sorted(set(ea) ^ set(aa))}")
    for k in sorted(ea):
        if k not in skip and not same_value(ea[k], aa[k]):
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
