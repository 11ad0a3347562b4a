"""Feature extractors: the sFID layout, the digits extractor's wiring, the Inception sFID hook (random weights)."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_fidelity import feature_extractor_inceptionv3 as tf_inception
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor

from dar.metrics import digits_net
from dar.metrics.extractors import FEATURE_SPACES, build_extractor, extract_features, register_extractors, spatial_flatten


def _coded_map(n: int, c: int, h: int, w: int) -> torch.Tensor:
    """fmap[n, c, h, w] = 1000 n + 100 c + 10 h + w: every entry names its own position."""
    idx = torch.meshgrid(*(torch.arange(s) for s in (n, c, h, w)), indexing="ij")
    return (1000 * idx[0] + 100 * idx[1] + 10 * idx[2] + idx[3]).float()


def test_spatial_flatten_is_nhwc_first_7_channels_in_hwc_order():
    n, c, h, w = 2, 9, 3, 4
    flat = spatial_flatten(_coded_map(n, c, h, w))
    assert flat.shape == (n, h * w * 7)
    for b in range(n):
        for y in range(h):
            for x in range(w):
                for ch in range(7):
                    assert flat[b, (y * w + x) * 7 + ch] == 1000 * b + 100 * ch + 10 * y + x
    assert (flat % 1000 // 100 < 7).all()  # channels 7 and 8 are dropped
    # NCHW slicing (the known port bug) would give another vector:
    assert not torch.equal(flat, _coded_map(n, c, h, w)[:, :7].reshape(n, -1))


def test_spatial_flatten_inception_size():
    assert spatial_flatten(torch.zeros(1, 192, 17, 17)).shape == (1, 2023)


def test_extractors_registered_with_torch_fidelity():
    register_extractors()
    register_extractors()  # idempotent
    for space in FEATURE_SPACES.values():
        assert space.extractor in FEATURE_EXTRACTORS_REGISTRY
    inception = FEATURE_SPACES["inception"]
    assert (inception.fid_layer, inception.isc_layer, inception.prc_layer) == ("2048", "logits_unbiased", "2048")


def test_digits_extractor_wiring(tmp_path):
    # An untrained net is enough to check which tensor lands in which feature.
    torch.manual_seed(0)
    net = digits_net.DigitsNet()
    path = tmp_path / "net.pt"
    digits_net.save(net, path, digits_net.TrainConfig())
    extractor = build_extractor(FEATURE_SPACES["digits"], path)
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)
    feats = extract_features(extractor, images, batch_size=2)

    x = digits_net.uint8_to_input(torch.from_numpy(images).permute(0, 3, 1, 2))
    spatial, features, logits = net.eval()(x)
    assert feats["sfid"].shape == (5, 8 * 8 * 7)
    # batches of 2, 2, 1 against one of 5: float32 convolutions may take another kernel per batch size (last-ulp noise)
    np.testing.assert_allclose(feats["sfid"], spatial.permute(0, 2, 3, 1)[..., :7].reshape(5, -1).detach(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(feats["features"], features.detach(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats["logits"], logits.detach(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(spatial.detach(), F.relu(net.conv1(x)).detach())  # sFID reads conv1 after ReLU


def test_digits_extractor_without_weights_is_a_clear_error():
    register_extractors()
    with pytest.raises(FileNotFoundError, match="digits-features"):
        create_feature_extractor("dar-digits", ["features"], cuda=False)


def test_inception_extractor_never_downloads():
    register_extractors()
    with pytest.raises(FileNotFoundError, match="fetch-assets --only inception-v3-compat"):
        create_feature_extractor("dar-inception-v3", ["2048"], cuda=False)


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory):
    """A torch-fidelity InceptionV3 state dict with random (He-normal) weights; no download.

    torch-fidelity builds the network only together with loading weights, so the
    constructor runs once with loading stubbed out, and its random state is saved.
    """
    with (
        mock.patch.object(tf_inception.torch, "load", lambda *a, **k: {}),
        mock.patch.object(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None),
    ):
        model = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="-")
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight)  # keeps activations O(1) through the 94 conv layers
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(model.state_dict(), path)
    return path


def test_inception_sfid_hook_reads_mixed_6d_branch1x1(random_inception_weights):
    extractor = build_extractor(FEATURE_SPACES["inception"], random_inception_weights)
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    feats = extract_features(extractor, images)
    assert {k: v.shape for k, v in feats.items()} == {"2048": (2, 2048), "sfid": (2, 2023), "logits_unbiased": (2, 1008)}

    # Independent forward to ADM's mixed_6/conv: torch-fidelity's preprocessing, the stem, Mixed_5b..6c,
    # then Mixed_6d's first 1x1 conv with BN and ReLU (BasicConv2d), NHWC, channels [:7], (h, w, c) order.
    inc = extractor.inception
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = (interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False) - 128) / 128
    with torch.no_grad():
        for name in (
            "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
            "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
        ):  # fmt: skip
            x = getattr(inc, name)(x)
        b = inc.Mixed_6d.branch1x1
        mixed_6_conv = F.relu(b.bn(b.conv(x)))  # (2, 192, 17, 17)
    assert mixed_6_conv.shape == (2, 192, 17, 17) and mixed_6_conv.std() > 1e-3
    want = mixed_6_conv.permute(0, 2, 3, 1)[..., :7].reshape(2, -1)
    np.testing.assert_allclose(feats["sfid"], want, rtol=1e-4, atol=1e-5)

    # The other features are torch-fidelity's own, untouched by the wrapper.
    plain = tf_inception.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(random_inception_weights)
    )
    with torch.no_grad():
        pool3, logits = plain(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    np.testing.assert_allclose(feats["2048"], pool3, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(feats["logits_unbiased"], logits, rtol=1e-4, atol=1e-5)
