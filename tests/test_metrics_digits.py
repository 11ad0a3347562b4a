"""The digits feature network and digits-space reference statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dar.metrics import digits_net
from dar.metrics.extractors import FEATURE_SPACES, build_extractor, extract_features
from dar.metrics.fidelity import fid_from_statistics
from dar.metrics.frechet import feature_statistics
from dar.metrics.reference import compute_reference, load_dataset_images, load_reference
from dar.metrics.reference import main as reference_main
from dar.provenance import file_sha256

SPACE = FEATURE_SPACES["digits"]


def test_digits_net_heldout_accuracy(digits_net_path):
    assert digits_net.accuracy(digits_net.load(digits_net_path), "heldout") >= 0.97


def test_training_and_weights_file_are_deterministic(tmp_path):
    cfg = digits_net.TrainConfig(epochs=1)
    a, b = digits_net.train(cfg), digits_net.train(cfg)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    digits_net.save(a, tmp_path / "a.pt", cfg)
    digits_net.save(b, tmp_path / "b.pt", cfg)  # same bytes: reference caches keyed on the sha256 stay valid on reruns
    assert file_sha256(tmp_path / "a.pt") == file_sha256(tmp_path / "b.pt")


def test_digits_fid_real_far_below_noise(digits_net_path):
    extractor = build_extractor(SPACE, digits_net_path)
    train = compute_reference(load_dataset_images("digits-train"), SPACE, extractor, "sha", "digits-train")
    heldout = load_dataset_images("digits-heldout")
    noise = np.random.default_rng(0).integers(0, 256, heldout.shape, dtype=np.uint8)

    def fid(images: np.ndarray) -> float:
        mu, sigma = feature_statistics(extract_features(extractor, images)[SPACE.fid_layer])
        return fid_from_statistics(mu, sigma, train["mu"], train["sigma"])

    real, random = fid(heldout), fid(noise)
    assert real < 0.05 * random, (real, random)


def test_load_missing_weights_names_the_command(tmp_path):
    with pytest.raises(digits_net.DigitsWeightsError, match="python -m dar digits-features --out"):
        digits_net.load(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"something": 1}, bad)
    with pytest.raises(digits_net.DigitsWeightsError, match="not a digits-net weights file"):
        digits_net.load(bad)


def test_digits_features_cli_refuses_low_accuracy(tmp_path, capsys):
    rc = digits_net.main(["--out", str(tmp_path / "df"), "--epochs", "1", "--min-accuracy", "0.999"])
    assert rc == 1 and not (tmp_path / "df").exists()
    assert "nothing written" in capsys.readouterr().err


def test_reference_stats_cli_caches_by_content(tmp_path, digits_net_path, capsys):
    out = tmp_path / "ref.npz"
    args = ["--dataset", "digits-train", "--features", "digits", "--weights", str(digits_net_path), "--out", str(out)]
    assert reference_main(args) == 0
    ref = load_reference(out)
    assert ref.kind == "dar-cache" and ref.feature_space == "digits" and ref.count == 1500
    assert ref.image_shape == (8, 8, 1) and ref.mu.shape == (64,) and ref.mu_s.shape == (448,)
    assert ref.pr_features.shape == (1500, 64) and ref.mu.dtype == np.float64
    mtime = out.stat().st_mtime_ns
    capsys.readouterr()
    assert reference_main(args) == 0  # same content: not recomputed
    assert "up to date" in capsys.readouterr().out and out.stat().st_mtime_ns == mtime

    other = tmp_path / "other.pt"  # other weights -> other content hash -> recomputed
    digits_net.save(digits_net.DigitsNet(), other, digits_net.TrainConfig())
    assert reference_main([*args[:5], str(other), *args[6:]]) == 0
    assert load_reference(out).content_sha256 != ref.content_sha256


def test_reference_stats_cli_errors(tmp_path, digits_net_path, capsys):
    out = tmp_path / "ref.npz"
    assert (
        reference_main(["--dataset", "imagenet", "--features", "digits", "--weights", str(digits_net_path), "--out", str(out)])
        == 2
    )
    assert "unknown dataset 'imagenet'" in capsys.readouterr().err
    assert reference_main(["--dataset", "digits-train", "--features", "digits", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "needs --weights" in err and "python -m dar digits-features" in err
    assert not out.exists()
