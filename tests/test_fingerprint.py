"""Fingerprints: canonical, sensitive to every identity field, and refusals that name the differing fields."""

from __future__ import annotations

import pytest

from dar.config import ConfigError
from dar.fingerprint import LENGTH, IdentityMismatch, canonical, differences, fingerprint


def test_canonical_form_ignores_key_order_and_tuple_vs_list():
    a = {"lr": 1e-4, "betas": (0.9, 0.999), "data": {"dataset": "digits", "encoder": "identity"}}
    b = {"data": {"encoder": "identity", "dataset": "digits"}, "betas": [0.9, 0.999], "lr": 0.0001}
    assert canonical(a) == canonical(b) and fingerprint(a) == fingerprint(b)
    assert len(fingerprint(a)) == LENGTH and int(fingerprint(a), 16) >= 0


@pytest.mark.parametrize("change", [{"lr": 2e-4}, {"betas": [0.9, 0.99]}, {"data": {"dataset": "digits", "encoder": "sd-vae"}}])
def test_every_field_changes_the_fingerprint(change):
    base = {"lr": 1e-4, "betas": [0.9, 0.999], "data": {"dataset": "digits", "encoder": "identity"}}
    assert fingerprint({**base, **change}) != fingerprint(base)


def test_differences_name_nested_fields():
    rec = {"routing": "dar-static-c4", "lr": 0.001, "data": {"dataset": "digits"}}
    now = {"routing": "dar-static-c8", "lr": 0.001, "data": {"dataset": "imagefolder"}, "seed": 1}
    assert differences(rec, now) == [
        ("data.dataset", "digits", "imagefolder"),
        ("routing", "dar-static-c4", "dar-static-c8"),
        ("seed", None, 1),
    ]
    assert differences(rec, dict(rec)) == []
    assert differences(None, rec) == [("(identity)", None, rec)]
    # what hashes apart differs: a whole-number float is not its int, a bool not its number
    assert differences({"nfe": 4}, {"nfe": 4.0}) == [("nfe", 4, 4.0)] and fingerprint({"nfe": 4}) != fingerprint({"nfe": 4.0})
    assert differences({"ema": True}, {"ema": 1}) == [("ema", True, 1)]


def test_identity_mismatch_names_fields_and_ways_out():
    e = IdentityMismatch("run folder", "results/x", {"lr": 0.001}, {"lr": 0.002}, ["use --out", "pass --restart"])
    assert isinstance(e, ConfigError)
    assert str(e) == (
        "run folder results/x was produced by a different configuration (lr: 0.001 recorded there, 0.002 now), "
        "so it is not reused. Either use --out, or pass --restart."
    )
    assert e.differences == [("lr", 0.001, 0.002)]


def test_non_finite_and_foreign_values_have_no_fingerprint():
    with pytest.raises(ValueError):
        fingerprint({"lr": float("nan")})
    with pytest.raises(TypeError):
        fingerprint({"x": object()})
