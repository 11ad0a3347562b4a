"""The asset registry, `require_asset`'s error, and the fetch step (local file:// and localhost only, no network)."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from typing import ClassVar

import pytest

from dar import assets
from dar.assets import ASSETS, Asset, AssetFile, AssetMissingError, require_asset


def test_registry_covers_every_asset():
    assert set(ASSETS) == {"sd-vae-ft-ema", "inception-v3-compat", "adm-ref-imagenet256", "dinov2-vitb14"}
    inception = ASSETS["inception-v3-compat"]
    assert inception.target == "weights-inception-2015-12-05-6726825d.pth"
    assert inception.files[0].url.endswith("/v0.2.0/weights-inception-2015-12-05-6726825d.pth")
    assert inception.files[0].sha256_prefix == "6726825d"
    assert ASSETS["adm-ref-imagenet256"].target == "VIRTUAL_imagenet256_labeled.npz"
    assert {f.path for f in ASSETS["sd-vae-ft-ema"].files} >= {"sd-vae-ft-ema/config.json"}
    for a in ASSETS.values():
        assert a.used_by and a.source and all(f.url.startswith("https://") for f in a.files)


def test_vae_asset_name_matches_the_encoder():
    from dar.data.encoders import VAE_ASSET

    assert VAE_ASSET in ASSETS


def test_missing_asset_names_file_folder_and_command(tmp_path):
    with pytest.raises(AssetMissingError) as e:
        require_asset("inception-v3-compat", tmp_path)
    msg = str(e.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in msg and str(tmp_path) in msg
    assert f"python -m dar fetch-assets --dest {tmp_path} --only inception-v3-compat" in msg


def test_missing_file_of_a_folder_asset(tmp_path):
    (tmp_path / "sd-vae-ft-ema").mkdir()
    (tmp_path / "sd-vae-ft-ema" / "config.json").write_text("{}")
    with pytest.raises(AssetMissingError, match=r"diffusion_pytorch_model\.safetensors"):
        require_asset("sd-vae-ft-ema", tmp_path)
    (tmp_path / "sd-vae-ft-ema" / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    assert require_asset("sd-vae-ft-ema", tmp_path) == tmp_path / "sd-vae-ft-ema"


def test_assets_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(assets.ENV_VAR, raising=False)
    with pytest.raises(AssetMissingError, match="pass --assets-dir DIR or set DAR_ASSETS"):
        require_asset("dinov2-vitb14")
    (tmp_path / "dinov2_vitb14_pretrain.pth").write_bytes(b"w")
    monkeypatch.setenv(assets.ENV_VAR, str(tmp_path))
    assert require_asset("dinov2-vitb14") == tmp_path / "dinov2_vitb14_pretrain.pth"
    with pytest.raises(KeyError, match="unknown asset"):
        require_asset("vgg16")


PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def _register(monkeypatch, url: str, sha256: str | None = None, prefix: str | None = None) -> str:
    asset = Asset("test-asset", "blob.bin", (AssetFile("blob.bin", url, sha256, prefix),), "test", "tests")
    monkeypatch.setitem(ASSETS, asset.name, asset)
    return asset.name


def test_fetch_verifies_hash_and_writes_manifest(tmp_path, monkeypatch, capsys):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "assets"
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    name = _register(monkeypatch, src.as_uri(), sha256=digest)
    assert assets.main(["--dest", str(dest), "--only", name]) == 0
    assert (dest / "blob.bin").read_bytes() == PAYLOAD
    manifest = json.loads((dest / "assets.json").read_text())
    assert manifest[name]["files"]["blob.bin"]["sha256"] == digest
    assert require_asset(name, dest) == dest / "blob.bin"
    assert assets.main(["--dest", str(dest), "--only", name]) == 0  # second run: present and verified
    assert "present" in capsys.readouterr().out


def test_fetch_hash_mismatch_leaves_nothing(tmp_path, monkeypatch, capsys):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "assets"
    name = _register(monkeypatch, src.as_uri(), prefix="00000000")
    assert assets.main(["--dest", str(dest), "--only", name]) == 1
    assert "does not start with the expected 00000000" in capsys.readouterr().err
    assert not (dest / "blob.bin").exists() and not list(dest.glob(".*"))


def test_fetch_without_network_is_a_clear_error(tmp_path, monkeypatch, capsys):
    name = _register(monkeypatch, (tmp_path / "absent.bin").as_uri())
    assert assets.main(["--dest", str(tmp_path / "a"), "--only", name]) == 1
    assert "rerun where the network is to resume" in capsys.readouterr().err


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    served: ClassVar[list[int]] = []

    def do_GET(self):
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if "Range" in self.headers else 0
        body = PAYLOAD[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.end_headers()
        self.wfile.write(body)
        _RangeHandler.served.append(len(body))

    def log_message(self, *args):
        pass


def test_fetch_resumes_a_partial_download(tmp_path, monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        dest = tmp_path / "assets"
        dest.mkdir()
        (dest / ".blob.bin.part").write_bytes(PAYLOAD[:300_000])  # an interrupted earlier run
        name = _register(monkeypatch, f"http://127.0.0.1:{server.server_port}/blob.bin", hashlib.sha256(PAYLOAD).hexdigest())
        _RangeHandler.served.clear()
        assert assets.main(["--dest", str(dest), "--only", name]) == 0
        assert _RangeHandler.served == [len(PAYLOAD) - 300_000]  # only the rest was sent
        assert (dest / "blob.bin").read_bytes() == PAYLOAD and not (dest / ".blob.bin.part").exists()
    finally:
        server.shutdown()
        server.server_close()


def test_list_reports_presence(tmp_path, capsys):
    (tmp_path / "dinov2_vitb14_pretrain.pth").write_bytes(b"w")
    assert assets.main(["--dest", str(tmp_path), "--list"]) == 0
    out = capsys.readouterr().out
    assert "dinov2-vitb14" in out and "present" in out and "missing" in out
