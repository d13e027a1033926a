"""Checkpoints never run pickled code, and unreadable ones are named in the error."""
import ast
import io
import pathlib

import pytest
import torch

from cortexzoo.zoo.weights import WeightsFileError, load_state_dict_file, safe_torch_load

LIB = pathlib.Path(__file__).resolve().parents[2] / "lib" / "cortexzoo"


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = (f"{f.value.id}.{f.attr}" if isinstance(f, ast.Attribute)
                    and isinstance(f.value, ast.Name) else getattr(f, "id", None))
            yield name, node


def test_every_unpickling_call_in_the_package_is_safe():
    offenders = []
    for path in LIB.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for name, node in _calls(tree):
            kw = {k.arg: k.value for k in node.keywords}
            where = f"{path.relative_to(LIB)}:{node.lineno}"
            if name == "torch.load":
                ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                if not ok:
                    offenders.append(f"{where} torch.load without weights_only=True")
            elif name in ("pickle.load", "pickle.loads", "cloudpickle.loads", "joblib.load"):
                offenders.append(f"{where} {name}")
            elif name == "np.load":
                ap = kw.get("allow_pickle")
                if not (isinstance(ap, ast.Constant) and ap.value is False):
                    offenders.append(f"{where} np.load without allow_pickle=False")
    assert not offenders, "unsafe loads:\n" + "\n".join(offenders)


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_checkpoint_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": _Evil(str(marker))}, ckpt)
    assert not marker.exists()
    with pytest.raises(WeightsFileError, match="evil.pt"):
        safe_torch_load(str(ckpt))
    assert not marker.exists()
    with pytest.raises(WeightsFileError, match="evil.pt"):
        load_state_dict_file(str(ckpt))
    assert not marker.exists()


def test_truncated_checkpoint_named(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.arange(1000.0)}, good)
    assert torch.equal(safe_torch_load(str(good))["w"], torch.arange(1000.0))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:300])
    with pytest.raises(WeightsFileError, match="cut.pt"):
        safe_torch_load(str(cut))
    with pytest.raises(WeightsFileError, match="s3://b/run/model.pt"):
        safe_torch_load(io.BytesIO(good.read_bytes()[:300]), "s3://b/run/model.pt")


def test_twin_loader_uses_the_safe_path(tmp_path):
    from cortexzoo.twins.train import load_twin

    with pytest.raises(WeightsFileError, match="twin checkpoint"):
        load_twin(b"PK\x03\x04 not a checkpoint")
