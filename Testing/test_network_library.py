"""Bundled networks: packaging a training checkpoint, hash-checked loading, refusal of damaged files."""

import json

import pytest
import torch

from BoneReconLib.biplanar_network import BiplanarNet, load_network
from BoneReconLib.errors import InputError
from BoneReconLib.network_library import BUNDLED_DIR, bundled_weights, package_weights, read_network_manifest


def _checkpoint(path, seed):
    torch.manual_seed(seed)
    model = BiplanarNet(widths=(8, 16, 16, 16, 16))
    optimiser = torch.optim.Adam(model.parameters())
    torch.save(dict(model=model.state_dict(), optimiser=optimiser.state_dict(), step=7,
                    history=dict(settings=dict(config=model.config))), path)
    return model


def test_packaged_weights_load_back_and_damage_is_refused(tmp_path):
    folder = tmp_path / "Networks"
    model = _checkpoint(tmp_path / "checkpoint.pt", seed=1)
    entry = package_weights(tmp_path / "checkpoint.pt", "biplanar", "0.1", dict(metrics={"AP_mm": 9.9}),
                            folder=folder, licence="Apache-2.0")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["networks"]["biplanar"] == entry
    assert entry["metrics"] == {"AP_mm": 9.9} and entry["config"] == model.config and entry["licence"] == "Apache-2.0"
    path = bundled_weights("biplanar", folder)
    assert "optimiser" not in torch.load(path, weights_only=False)  # compact: weights and configuration only
    loaded = load_network(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    # A newer version replaces the entry and its old file.
    _checkpoint(tmp_path / "checkpoint2.pt", seed=2)
    package_weights(tmp_path / "checkpoint2.pt", "biplanar", "0.2", {}, folder=folder)
    assert not (folder / "biplanar-0.1.pt").exists()
    assert read_network_manifest(folder)["networks"]["biplanar"]["version"] == "0.2"

    data = bytearray((folder / "biplanar-0.2.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "biplanar-0.2.pt").write_bytes(bytes(data))
    with pytest.raises(InputError, match="do not match the manifest"):
        bundled_weights("biplanar", folder)
    with pytest.raises(InputError, match="No 'depth' network is bundled"):
        bundled_weights("depth", folder)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match="Could not read the network manifest"):
        bundled_weights("biplanar", folder)


def test_bundled_biplanar_network_is_intact_and_small():
    entry = read_network_manifest()["networks"].get("biplanar")
    assert entry is not None, f"no biplanar network in {BUNDLED_DIR}"
    assert entry["bytes"] < 50e6
    for key in ("data", "training", "metrics", "licence"):
        assert key in entry, key
    model = load_network()  # the default: bundled, hash checked
    assert model.config == entry["config"]


def test_bundled_depth_network_is_intact_and_small():
    from BoneReconLib.depth_training import bundled_depth_weights, load_depth_network

    entry = read_network_manifest()["networks"].get("depth-wrist")
    assert entry is not None, f"no depth-wrist network in {BUNDLED_DIR}"
    assert entry["bytes"] < 50e6
    for key in ("data", "test_data", "training", "metrics", "licence"):
        assert key in entry, key
    model = load_depth_network(bundled_depth_weights("wrist"))  # hash checked
    assert model.config == entry["config"]
    assert model.bones == ["radius", "ulna", "scaphoid", "lunate", "capitate"]
