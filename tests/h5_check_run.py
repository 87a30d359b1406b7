"""Opens a `headsweep run` result file with h5py and xarray, as a user would,
and checks its layout: provenance attributes, the resolved config, the
dataset group, and each experiment's datasets with named dimensions.
Usage: h5_check_run.py FILE.h5 (exit 0 when everything holds)."""
import sys

import h5py
import numpy as np
import xarray as xr

path = sys.argv[1]
with h5py.File(path, "r") as f:
    for key in ("headsweep_version", "git_revision", "created_utc", "config", "config_sha256", "n_layers", "n_heads"):
        assert key in f.attrs, f"root attribute {key} missing"
    L, H = int(f.attrs["n_layers"]), int(f.attrs["n_heads"])
    assert "experiments:" in f.attrs["config"], "resolved config not stored"
    tok = f["dataset/tokens"]
    N = tok.shape[0]
    for name, g in f.items():
        if name == "dataset":
            continue
        kind = g.attrs["type"]
        if kind == "head_ablation":
            d = g["delta"][...]
            assert d.shape == (N, L, H) and np.isfinite(d).all(), d.shape
            assert np.allclose(g["delta_mean"][...], d.mean(0), atol=1e-5)
            assert g.attrs["metric"] in ("loss", "logprob", "logit_diff", "kl", "accuracy")
        elif kind == "head_scores":
            for k, v in g.items():
                if k.endswith("_per_prompt"):
                    assert v.shape == (N, L, H), (k, v.shape)
                    assert np.allclose(g[k[: -len("_per_prompt")]][...], v[...].mean(0), atol=1e-6), k
                elif k == "generated_tokens":
                    assert v.shape[0] == N and v.dtype == np.int32, (k, v.shape, v.dtype)
                elif k == "needle_recall":
                    r = v[...]
                    assert r.shape == (N,) and ((r >= 0) & (r <= 1)).all(), (k, r)
                elif k == "retrieval_filtered":  # the paper's filter: NaN where no answer recalls half the needle
                    keep, per = g["needle_recall"][...] > 0.5, g["retrieval_per_prompt"][...]
                    assert int(v.attrs["prompts_kept"]) == keep.sum(), k
                    if keep.any():
                        assert np.allclose(v[...], per[keep].mean(0), atol=1e-6), k
                    else:
                        assert v.shape == (L, H) and np.isnan(v[...]).all(), k
                elif v.ndim == 2:
                    assert v.shape == (L, H) and np.isfinite(v[...]).all(), k
        elif kind == "pruning_curve":
            s = g["step"][...]
            assert s[0] == 0 and abs(s[-1] - 1) < 1e-6 and np.all(np.diff(s) > 0)
            assert g["masks"].shape == (len(s), L, H)
            assert np.allclose(g["metric"][...], g["metric_per_prompt"][...].mean(0), atol=1e-5)
        elif kind == "head_set_ablation":
            sets, m = g["sets"][...], g["metric_per_prompt"][...]
            assert sets.shape[1:] == (L, H) and m.shape == (N, sets.shape[0]), (sets.shape, m.shape)
            assert (sets.sum((1, 2)) == int(g.attrs["top_k"])).all(), "every set holds top_k heads"
            assert np.allclose(g["metric"][...], m.mean(0), atol=1e-5)
            assert abs(g.attrs["metric_top_k"] - g["metric"][0]) < 1e-5
            if g.attrs["metric"] == "needle_recall":  # the answers, unablated and per set
                assert g["base_generated_tokens"].shape[0] == N and g["base_generated_tokens"].dtype == np.int32
                assert g["generated_tokens"].shape[:2] == (N, sets.shape[0]) and g["generated_tokens"].dtype == np.int32
        elif kind == "activation_patching":
            assert g["clean"].shape == (N,) and g["corrupt"].shape == (N,)
            if "z_all_pos" in g:
                assert g["z_all_pos"].shape == (N, L, H) and g["z_all_pos_normalised"].shape == (L, H)
        elif kind == "capture":
            idx = g["prompt_index"][...]
            for k, v in g.items():
                if k.startswith("blocks."):
                    assert v.shape[0] == len(idx), (k, v.shape)
                    assert v.dims[0].label == "prompt", k
    ds = xr.open_dataset(path, group=[n for n in f if n != "dataset"][0], engine="h5netcdf")
    assert "layer" in ds.dims and "head" in ds.dims, ds.dims
print(f"h5_check_run: {path}: OK ({N} prompts, {L} layers x {H} heads)")
