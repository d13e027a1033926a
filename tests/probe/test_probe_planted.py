"""The probe tasks on planted twins with known answers (no Ray): an oriented filter bank
decodes orientation nearly perfectly, a constant encoder sits exactly at chance, a
contrast-energy twin detects better with contrast, planted units have the tuning their
filters give (checked against a plain numpy forward pass), and stimuli are matched
across architectures within a run seed."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cortexzoo.data import probe_stimuli as S
from cortexzoo.mapping import tuning as T
from cortexzoo.probe.config import ProbeConfig
from cortexzoo.probe.extract import FeatureExtractor
from cortexzoo.probe.tasks import contrast_task, motion_task, orientation_task
from cortexzoo.probe.tuning import tuning_grid, tuning_task
from cortexzoo.twins.model import Twin, TwinConfig

torch.set_num_threads(1)
HW = (24, 32)

SMALL = dict(
    orientation=dict(train_sizes=[32, 128, 512], n_val=256, n_test=512, n_ood=256),
    contrast=dict(n_train=400, n_val=200, n_test_per_contrast=100, n_test_blank=200,
                  eval_contrasts=[0.0, 0.05, 0.1, 0.2, 0.4, 1.0]),
    motion=dict(n_frames=10, n_train=200, n_val=100, n_test_per_coherence=50,
                eval_coherences=[0.0, 0.5, 1.0]),
    tuning=dict(n_orientations=8, n_phases=8, n_sfs=6, sf_min=0.03, sf_max=0.25),
    linear=dict(l2_grid=[1e-4, 1e-2, 1.0]),
)


def _twin(encoder: nn.Module, feature_dim: int, hidden_dim: int = 4, hw=HW) -> Twin:
    cfg = TwinConfig(encoder="cnn", feature_dim=feature_dim, hidden_dim=hidden_dim,
                     encoder_kwargs={"channels": [2], "kernels": [3]})
    torch.manual_seed(0)
    tw = Twin(cfg, ["a"], [1], hw)
    tw.encoder = encoder
    return tw.eval()


class SectorEnergy(nn.Module):
    """A fixed bank of oriented filters: log power of the (Hann-windowed) frame in 16
    orientation sectors of the spatial-frequency plane."""

    def __init__(self, hw, n=16):
        super().__init__()
        h, w = hw
        fy = np.fft.fftfreq(h)[:, None]
        fx = np.fft.rfftfreq(w)[None, :]
        ang = np.mod(np.arctan2(fy, fx), np.pi)
        rad = np.hypot(fy, fx)
        th = np.arange(n) * np.pi / n
        masks = np.exp(4.0 * np.cos(2 * (ang[None] - th[:, None, None]))) * (rad > 0.02)
        win = np.outer(np.hanning(h), np.hanning(w))
        self.register_buffer("masks", torch.tensor(masks, dtype=torch.float32))
        self.register_buffer("win", torch.tensor(win, dtype=torch.float32))

    def forward(self, x):
        z = x[:, 0] - x[:, 0].mean(dim=(1, 2), keepdim=True)
        p = torch.fft.rfft2(z * self.win).abs() ** 2
        return torch.log(torch.einsum("bhw,khw->bk", p, self.masks) + 1e-6)


class Constant(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.v = nn.Parameter(torch.linspace(-1, 1, d))

    def forward(self, x):
        return self.v.expand(x.shape[0], -1) + 0 * x.sum()


class PatchEnergy(nn.Module):
    """Quadrature-pair energy at the contrast probe's target patch (zero-mean filters)."""

    def __init__(self, hw, sigma_frac=0.12, sf=0.09):
        super().__init__()
        h, w = hw
        c = (0.5 * (h - 1), 0.5 * (w - 1))
        g = [S.gabor(h, w, c, sigma_frac * min(h, w), sf, 0.0, ph)[0] for ph in (0, np.pi / 2)]
        g = [(x - x.mean()) / np.linalg.norm(x - x.mean()) for x in g]
        self.register_buffer("g", torch.tensor(np.stack(g), dtype=torch.float32))

    def forward(self, x):
        p = torch.einsum("bhw,khw->bk", x[:, 0], self.g)
        return (p ** 2).sum(dim=1, keepdim=True) * 0.05


def _leaky_gru(tw: Twin) -> Twin:
    """GRU with z = 1/2 and n = tanh(x): h_t = (tanh(x_t) + h_{t-1}) / 2 in every unit."""
    with torch.no_grad():
        for p in tw.gru.parameters():
            p.zero_()
        H = tw.gru.hidden_size
        tw.gru.weight_ih_l0[2 * H:] = 1.0
    return tw


def test_oriented_filter_bank_decodes_orientation_nearly_perfectly():
    cfg = ProbeConfig.from_dict({**SMALL, "orientation": {
        **SMALL["orientation"],
        "id": {"sf": [0.08, 0.16], "contrast": [0.3, 1.0], "noise": [0.0, 0.05],
               "blur": [0.0, 1.0], "mean": [0.4, 0.6]},
        "ood": {"sf": [0.1, 0.2], "contrast": [0.1, 0.3], "noise": [0.05, 0.1],
                "blur": [0.5, 1.0], "mean": [0.25, 0.4]}}})
    fx = FeatureExtractor(_twin(SectorEnergy(HW), 16), HW, 256, "cpu")
    res = orientation_task(fx, cfg, run_seed=0)
    v = {r["metric"]: r["value"] for r in res.rows}
    assert v["orientation_accuracy_id"] >= 0.93
    assert v["orientation_accuracy_ood"] >= 2 / 8   # shifted nuisances cost accuracy
    curve = res.tables["orientation"]
    idc = curve[curve["split"] == "id"].sort_values("train_size")["accuracy"].to_numpy()
    assert idc[-1] >= idc[0] - 0.02 and idc[0] > 0.4   # well above chance even at 32
    x = np.log2([32, 128, 512])
    assert v["orientation_nauc_id"] == pytest.approx(
        np.sum((idc[1:] + idc[:-1]) * np.diff(x)) / 2 / (x[-1] - x[0]))
    assert v["orientation_nauc_id_chance_adjusted"] == pytest.approx(
        (v["orientation_nauc_id"] - 1 / 8) / (1 - 1 / 8))


def test_constant_encoder_sits_exactly_at_chance():
    cfg = ProbeConfig.from_dict(SMALL)
    fx = FeatureExtractor(_twin(Constant(8), 8), HW, 256, "cpu")
    ori = orientation_task(fx, cfg, 0).tables["orientation"]
    assert (ori["accuracy"] == 1 / 8).all()
    con = contrast_task(fx, cfg, 0).tables["contrast"]
    assert (con["balanced_accuracy"] == 0.5).all()
    mot = motion_task(fx, cfg, 0).tables["motion"]
    assert (mot["accuracy"] == 0.5).all()


def test_contrast_detection_rises_with_contrast_for_a_contrast_energy_twin():
    cfg = ProbeConfig.from_dict(SMALL)
    fx = FeatureExtractor(_leaky_gru(_twin(PatchEnergy(HW), 1, hidden_dim=1)), HW, 256, "cpu")
    res = contrast_task(fx, cfg, 0)
    c = res.tables["contrast"].sort_values("contrast")
    bal = c["balanced_accuracy"].to_numpy()
    assert 0.4 <= bal[0] <= 0.6           # contrast 0: a target trial looks blank
    assert bal[-1] >= 0.95
    # it rises: no step down beyond binomial noise (100 targets per contrast), and the
    # rise from the floor to the top is most of the range
    assert (np.diff(bal) >= -0.05).all()
    assert bal[c["contrast"].to_numpy() == 0.4][0] >= bal[c["contrast"].to_numpy() == 0.1][0] + 0.2
    # balanced accuracy is (hit + correct rejection) / 2, with one CR rate for all contrasts
    np.testing.assert_allclose(bal, (c["hit_rate"] + c["cr_rate"]) / 2)
    assert c["cr_rate"].nunique() == 1
    # the constant encoder's nAUC is exactly 0.5; this one is far above
    nauc = [r["value"] for r in res.rows if r["metric"] == "contrast_nauc"][0]
    assert nauc > 0.75


class Planted(nn.Module):
    """Unit 0: a rectified linear Gabor (simple, 45 deg, 0.1 c/px); unit 1: the energy of a
    quadrature pair (complex, 90 deg, 0.15 c/px); unit 2: a rectified centre-surround."""

    def __init__(self, hw):
        super().__init__()
        h, w = hw
        c = ((h - 1) / 2, (w - 1) / 2)
        f = [S.gabor(h, w, c, 7.0, 0.1, np.pi / 4, 0.0)[0],
             S.gabor(h, w, c, 7.0, 0.15, np.pi / 2, 0.0)[0],
             S.gabor(h, w, c, 7.0, 0.15, np.pi / 2, np.pi / 2)[0]]
        yy, xx = np.mgrid[0:h, 0:w]
        r2 = (yy - c[0]) ** 2 + (xx - c[1]) ** 2
        f.append(np.exp(-r2 / (2 * 1.5 ** 2)) - 0.25 * np.exp(-r2 / (2 * 3.0 ** 2)))
        f = [x - x.mean() for x in f]
        self.filters = np.stack(f)
        self.register_buffer("f", torch.tensor(self.filters, dtype=torch.float32))

    def forward(self, x):
        p = torch.einsum("bhw,khw->bk", x[:, 0] - 0.5, self.f)
        return torch.stack([torch.relu(p[:, 0]), torch.sqrt(p[:, 1] ** 2 + p[:, 2] ** 2 + 1e-12),
                            torch.relu(p[:, 3])], dim=1)

    def numpy_forward(self, imgs):
        p = np.einsum("bhw,khw->bk", imgs.astype(np.float64) - 0.5, self.filters)
        return np.stack([np.maximum(p[:, 0], 0), np.sqrt(p[:, 1] ** 2 + p[:, 2] ** 2 + 1e-12),
                         np.maximum(p[:, 3], 0)], axis=1)


def test_planted_units_have_the_tuning_of_their_filters():
    hw = (32, 32)
    cfg = ProbeConfig.from_dict(SMALL)
    enc = Planted(hw)
    res = tuning_task(FeatureExtractor(_twin(enc, 3, hw=hw), hw, 256, "cpu"), cfg)
    units = res.tables["tuning"].set_index("unit")
    # the same grid through a plain numpy forward pass of the filters
    g = tuning_grid(cfg)
    th, ph, sf, cs = g["thetas"], g["phases"], g["sfs"], g["contrasts"]
    O, P, F = np.meshgrid(th, ph, sf, indexing="ij")
    R = enc.numpy_forward(S.grating(*hw, O.ravel(), F.ravel(), P.ravel(), 1.0, 0.5)).reshape(
        len(th), len(ph), len(sf), 3)
    for d in range(3):
        ori = R[..., d].mean(axis=(1, 2))
        io = int(np.argmax(ori))
        sfc = R[io, :, :, d].mean(axis=0)
        isf = int(np.argmax(sfc))
        phc = R[io, :, isf, d]
        if d < 2:  # unit 2's curve is flat up to float32 round-off, its gOSI meaningless
            assert units.loc[d, "gosi"] == pytest.approx(float(T.gosi(ori, th)), rel=1e-4)
        assert units.loc[d, "f1_f0"] == pytest.approx(float(T.f1_f0(phc)), rel=1e-3, abs=1e-3)
        assert units.loc[d, "pref_sf_sampled"] == pytest.approx(sf[isf])
        Cg, Pg = np.meshgrid(cs, ph, indexing="ij")
        con = enc.numpy_forward(S.grating(*hw, th[io], sf[isf], Pg.ravel(), Cg.ravel(), 0.5))
        con = con[:, d].reshape(len(cs), len(ph)).mean(axis=1)
        curves = res.tables["tuning_curves"]
        got = curves[(curves["unit"] == d) & (curves["curve"] == "contrast")]["response"]
        np.testing.assert_allclose(got.to_numpy(), con, rtol=1e-4, atol=1e-5)
    assert units.loc[0, "pref_ori_bin_deg"] == pytest.approx(45.0)
    assert units.loc[1, "pref_ori_bin_deg"] == pytest.approx(90.0)
    assert units.loc[0, "f1_f0"] > 1.0 and units.loc[1, "f1_f0"] < 0.01   # simple, complex
    assert min(units.loc[0, "gosi"], units.loc[1, "gosi"]) > 0.8
    # the isotropic unit's orientation curve is flat: it fails orientation QC
    assert units.loc[2, "range_orientation"] < 1e-4 and not units.loc[2, "qc_orientation"]
    assert units.loc[1, "pref_sf_fit"] == pytest.approx(0.15, rel=0.35)
    assert bool(units.loc[0, "qc_orientation"]) and bool(units.loc[1, "qc_phase"])
    rows = {r["metric"]: r["value"] for r in res.rows}
    ok = units["qc_orientation"].to_numpy(bool)
    assert rows["median_gosi"] == pytest.approx(np.median(units["gosi"].to_numpy()[ok]))


class Spy(nn.Module):
    """Records every batch of frames it is shown; its output width is the 'architecture'."""

    def __init__(self, d):
        super().__init__()
        self.d, self.seen = d, []

    def forward(self, x):
        self.seen.append(x.detach().numpy().copy())
        return torch.zeros(x.shape[0], self.d) + x.mean(dim=(1, 2, 3))[:, None]


@pytest.mark.parametrize("task", [orientation_task, contrast_task])
def test_stimuli_are_matched_across_architectures_within_a_run_seed(task):
    cfg = ProbeConfig.from_dict({**SMALL, "batch_size": 97})
    runs = {}
    for name, d, seed, bs in (("a", 4, 0, 97), ("b", 9, 0, 64), ("c", 4, 1, 97)):
        spy = Spy(d)
        task(FeatureExtractor(_twin(spy, d), HW, bs, "cpu"), cfg, seed)
        runs[name] = np.concatenate([s.reshape(-1, *HW) for s in spy.seen])
    np.testing.assert_array_equal(runs["a"], runs["b"])       # other architecture, batch size
    assert runs["a"].shape == runs["c"].shape and not np.array_equal(runs["a"], runs["c"])
