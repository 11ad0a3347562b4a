"""Rehearsal stand-ins: real in architecture and file format (the paper path's own loaders read them), random in
weights, and labelled as such wherever a number is made from them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dar.assets import ASSETS, MANIFEST, REHEARSAL_PROVENANCE, provenance
from dar.rehearsal import main as rehearsal_main


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    dest = tmp_path_factory.mktemp("rehearsal") / "assets"
    assert rehearsal_main(["--dest", str(dest), "--classes", "2", "--per-class", "3"]) == 0
    return dest


@pytest.mark.slow
def test_stand_ins_load_through_the_paper_paths_own_loaders(assets):
    from dar.data.encoders import SDVAEEncoder
    from dar.data.imagefolder import ImageFolderDataset
    from dar.metrics.extractors import FEATURE_SPACES, build_extractor, extract_features
    from dar.metrics.reference import load_reference
    from dar.repa.encoders import build_encoder

    ds = ImageFolderDataset(assets / "imagefolder", 256)  # JPEGs at sizes other than 256 through the ADM crop
    assert len(ds) == 6 and len(ds.classes) == 2 and ds[0][0].shape == (3, 256, 256)
    vae = SDVAEEncoder(assets / ASSETS["sd-vae-ft-ema"].target)  # a local diffusers folder, as fetch-assets leaves it
    mean, std = vae.moments(ds[0][0][None])
    assert mean.shape == (1, 4, 32, 32) and torch.isfinite(mean).all() and (std > 0).all()
    assert vae.decode(mean * vae.scale).shape == (1, 3, 256, 256)
    space = FEATURE_SPACES["inception"]
    inception = build_extractor(space, assets / ASSETS["inception-v3-compat"].target, "cpu")  # strict state-dict load
    ref = load_reference(assets / ASSETS["adm-ref-imagenet256"].target)
    assert ref.kind == "adm-batch" and ref.images.shape == (6, 256, 256, 3) and ref.mu.shape == (2048,)
    feats = extract_features(inception, ref.images[:2], batch_size=2)
    assert feats["2048"].shape == (2, 2048) and np.isfinite(feats["2048"]).all() and feats["sfid"].shape == (2, 2023)
    dino = build_encoder("dinov2", assets / ASSETS["dinov2-vitb14"].target, 16)  # official layout, strict load
    tokens = dino(torch.rand(1, 3, 256, 256) * 2 - 1)
    assert tokens.shape == (1, 256, 768) and torch.isfinite(tokens).all()


@pytest.mark.slow
def test_stand_ins_say_what_they_are(assets):
    manifest = json.loads((assets / MANIFEST).read_text())
    assert all(entry["rehearsal"] for entry in manifest.values())
    assert all(REHEARSAL_PROVENANCE in entry["source"] for entry in manifest.values())
    for name in ("sd-vae-ft-ema", "inception-v3-compat", "dinov2-vitb14", "adm-ref-imagenet256"):
        assert provenance(assets / ASSETS[name].target) == REHEARSAL_PROVENANCE, name
    assert provenance(assets.parent / "elsewhere.pth") == "published"


def test_a_cell_evaluated_with_stand_ins_is_never_compared_with_the_paper():
    from dar.cell import CellConfig, cell_result

    cfg = CellConfig(table="table1", name="sit_ode_cfg1.0", out="x", scale="imagenet256", run="sit", seeds=[0])
    side = {"iteration": 10, "sampler_alias": "ode", "cfg_scale": 1.0, "nfe": 250, "routing": "residual", "model": "SiT-XL/2"}
    metrics = {"fid": 3.0, "sfid": 5.0, "is_mean": 200.0, "precision": 0.8, "recall": 0.6}
    stand_in = {"feature_extractor": {"provenance": REHEARSAL_PROVENANCE}, "reference": {"provenance": "published"}}
    published = {"feature_extractor": {"provenance": "published"}, "reference": {"provenance": "published"}}
    res = cell_result(cfg, [side], [{"metrics": metrics, "protocol": stand_in}])
    assert res["paper"]["fid"] == 9.67 and res["delta"] == {} and REHEARSAL_PROVENANCE in res["delta_note"]
    assert cell_result(cfg, [side], [{"metrics": metrics, "protocol": published}])["delta"]["fid"] == pytest.approx(3.0 - 9.67)
