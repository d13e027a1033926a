"""`cortexzoo data domains` on the real photos shipped with scikit-image and scikit-learn:
every domain checked against an independent computation, every recipe re-rendered."""
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage as ndi

from cortexzoo.cli import main
from cortexzoo.data import DatasetError, load_dataset, write_dataset
from cortexzoo.data.domain_filters import thin
from cortexzoo.data.domains import DOMAINS, make_domain_set, render

skimage = pytest.importorskip("skimage")
SK = os.path.join(os.path.dirname(skimage.__file__), "data")
SKL = os.path.join(os.path.dirname(pytest.importorskip("sklearn").__file__), "datasets", "images")
PHOTOS = {"person": [f"{SK}/astronaut.png", f"{SK}/camera.png"],
          "animal": [f"{SK}/chelsea.png", f"{SKL}/flower.jpg"],
          "object": [f"{SK}/coffee.png", f"{SK}/rocket.jpg", f"{SKL}/china.jpg"]}
SIZE = 96


def photo_folder(root):
    for cat, files in PHOTOS.items():
        os.makedirs(root / cat, exist_ok=True)
        for f in files:
            shutil.copy(f, root / cat)
    return str(root)


@pytest.fixture(scope="module")
def domain_set(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("domains")
    out = make_domain_set(photo_folder(tmp / "src"), str(tmp / "out"), size=SIZE, variants=2,
                          seed=3, progress=False)
    return load_dataset(out)


def _img(ds, sid):
    row = ds.stimuli.set_index("stimulus_id").loc[sid]
    return np.asarray(Image.open(os.path.join(ds.uri, row["image"])))


def _rows(ds, domain, variant=0):
    st = ds.stimuli
    return st[(st["domain"] == domain) & (st["variant"] == variant)].sort_values("source_id")


def test_every_domain_of_every_photo_with_its_recipe(domain_set):
    ds = domain_set
    st = ds.stimuli
    assert ds.meta["stimulus_set"] is True and ds.responses is None
    assert list(dict.fromkeys(st["domain"])) == list(DOMAINS) and len(DOMAINS) == 13
    n_src = sum(len(v) for v in PHOTOS.values())
    assert (st.groupby("domain").size() == 2 * n_src).all()
    assert st["stimulus_id"].is_unique
    # each rendering keeps its photo's category
    cats = {os.path.splitext(os.path.basename(f))[0]: c for c, fs in PHOTOS.items() for f in fs}
    assert all(cats[s.split("-", 1)[1]] == c for s, c in zip(st["source_id"], st["category"]))
    for r in st.itertuples():
        rec = json.loads(r.recipe)
        assert rec["filter"] == r.domain and rec["size"] == SIZE and rec["version"] == 1
        left, top, right, bottom = rec["crop"]
        assert right - left == bottom - top  # a square crop
        if r.variant == 0:
            assert not rec["flip"]
    # every recipe of two photos gives back exactly the stored pixels
    for r in st[st["source_id"].isin(["person-camera", "object-coffee"])].itertuples():
        src = Image.open(json.loads(r.recipe)["source"])
        np.testing.assert_array_equal(render(src, r.recipe), _img(ds, r.stimulus_id))


def test_photo_grayscale_blur_noise_against_independent_computations(domain_set):
    ds = domain_set
    for r in _rows(ds, "photo").itertuples():
        rec = json.loads(r.recipe)
        src = Image.open(rec["source"]).convert("RGB")
        w, h = src.size
        s = min(w, h)
        box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
        want = np.asarray(src.crop(box).resize((SIZE, SIZE), Image.BICUBIC))
        photo = _img(ds, r.stimulus_id)
        np.testing.assert_array_equal(photo, want)
        base = r.stimulus_id[:-len("-photo")]
        g = _img(ds, base + "-grayscale")
        assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
        pil_l = np.asarray(Image.fromarray(photo).convert("L")).astype(int)
        assert np.abs(g[..., 0].astype(int) - pil_l).max() <= 1  # PIL's ITU-R 601 luma
        blur = _img(ds, base + "-blur").astype(float)
        sigma = json.loads(ds.stimuli.set_index("stimulus_id").loc[base + "-blur", "recipe"])["params"]["sigma"]
        ref = np.stack([ndi.gaussian_filter(photo[..., c] / 255.0, sigma * SIZE) for c in range(3)], -1)
        assert np.abs(blur - np.clip(ref * 255 + 0.5, 0, 255).astype(int)).max() <= 1
        # noise: Gaussian of the recipe's sigma from numpy's generator seeded by the recipe
        nrec = json.loads(ds.stimuli.set_index("stimulus_id").loc[base + "-noise", "recipe"])
        eps = np.random.default_rng(nrec["seed"]).normal(0.0, nrec["params"]["sigma"], photo.shape)
        want = np.clip(np.clip(photo / 255.0 + eps, 0, 1) * 255 + 0.5, 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(_img(ds, base + "-noise"), want)
        assert np.std(eps) == pytest.approx(0.25, rel=0.05)


def test_line_drawings_contain_scikit_image_canny_edges(domain_set):
    from skimage import feature

    ds = domain_set
    for r in _rows(ds, "lines").itertuples():
        lines = _img(ds, r.stimulus_id)
        assert set(np.unique(lines)) <= {0, 255}
        ours = lines[..., 0] == 0
        photo = _img(ds, r.stimulus_id[:-len("-lines")] + "-photo") / 255.0
        g = photo @ np.array([0.299, 0.587, 0.114])
        rec = json.loads(r.recipe)["params"]
        ref = feature.canny(g, sigma=rec["sigma"] * SIZE, low_threshold=0.8, high_threshold=0.9,
                            use_quantiles=True)
        near = ndi.binary_dilation(ours, iterations=1)
        assert ref.sum() > 20
        assert (ref & near).sum() / ref.sum() > 0.85, r.stimulus_id


def test_shape_domains_are_consistent_with_the_mask(domain_set):
    from skimage.morphology import convex_hull_image

    ds = domain_set
    st = ds.stimuli.set_index("stimulus_id")
    for r in _rows(ds, "silhouette").itertuples():
        base = r.stimulus_id[:-len("-silhouette")]
        sil = _img(ds, r.stimulus_id)[..., 0] == 0
        assert set(np.unique(_img(ds, r.stimulus_id))) <= {0, 255}
        assert sil.mean() == pytest.approx(st.loc[r.stimulus_id, "mask_fraction"])
        if sil.sum() < 30:
            continue
        outline = _img(ds, base + "-outline")[..., 0] == 0
        assert (outline & ~sil).sum() == 0 and 0 < outline.sum() < sil.sum()
        hull = _img(ds, base + "-convexhull")[..., 0] == 0
        assert (sil & ~hull).sum() == 0
        # convex: its convex hull adds no more than a rim of discretization (~sqrt(area))
        assert (convex_hull_image(hull) & ~hull).sum() <= 2.5 * np.sqrt(hull.sum())
        skel = _img(ds, base + "-skeleton")[..., 0] == 0
        assert (skel & ~ndi.binary_dilation(sil, iterations=2)).sum() == 0
        assert skel.sum() < 0.5 * sil.sum()


def _zhang_suen_loops(mask):
    """Zhang & Suen (1984), written out pixel by pixel."""
    img = mask.astype(int).copy()
    h, w = img.shape
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            remove = []
            for y in range(h):
                for x in range(w):
                    if not img[y, x]:
                        continue
                    def v(dy, dx):
                        yy, xx = y + dy, x + dx
                        return img[yy, xx] if 0 <= yy < h and 0 <= xx < w else 0
                    p = [v(-1, 0), v(-1, 1), v(0, 1), v(1, 1), v(1, 0), v(1, -1), v(0, -1), v(-1, -1)]
                    b = sum(p)
                    a = sum(1 for i in range(8) if p[i] == 0 and p[(i + 1) % 8] == 1)
                    p2, p4, p6, p8 = p[0], p[2], p[4], p[6]
                    c = (p2 * p4 * p6 == 0 and p4 * p6 * p8 == 0) if step == 0 else \
                        (p2 * p4 * p8 == 0 and p2 * p6 * p8 == 0)
                    if 2 <= b <= 6 and a == 1 and c:
                        remove.append((y, x))
            for y, x in remove:
                img[y, x] = 0
            changed = changed or bool(remove)
    return img.astype(bool)


def test_thinning_equals_zhang_suen_written_out():
    rng = np.random.default_rng(0)
    for _ in range(3):
        m = ndi.binary_closing(ndi.gaussian_filter(rng.random((40, 40)), 3) > 0.5, iterations=2)
        np.testing.assert_array_equal(thin(m), _zhang_suen_loops(m))


def test_mosaic_tiles_and_looks_of_painting_cartoon_sketch(domain_set):
    ds = domain_set
    for r in _rows(ds, "mosaic").itertuples():
        base = r.stimulus_id[:-len("-mosaic")]
        mos = _img(ds, r.stimulus_id).astype(int)
        n = min(json.loads(r.recipe)["params"]["tiles"], SIZE // 6)
        edges = np.linspace(0, SIZE, n + 1).round().astype(int)
        for i in (3, 10):
            for j in (5, 12):
                tile = mos[edges[i] + 1:edges[i + 1] - 1, edges[j] + 1:edges[j + 1] - 1].reshape(-1, 3)
                assert (tile == tile[0]).all()
        photo = _img(ds, base + "-photo").astype(float)
        g = photo @ [0.299, 0.587, 0.114]
        for d in ("painting", "cartoon"):
            x = _img(ds, f"{base}-{d}").astype(float)
            assert np.abs(x - photo).mean() > 3, d  # changed, yet the same picture
            assert np.corrcoef((x @ [0.299, 0.587, 0.114]).ravel(), g.ravel())[0, 1] > 0.35, d
        sk = _img(ds, base + "-sketch")
        assert (sk[..., 0] == sk[..., 2]).all()
        # pencil strokes where the photo has edges
        gs = ndi.gaussian_filter(g, 1.5)
        grad = np.hypot(ndi.sobel(gs, 0), ndi.sobel(gs, 1))
        assert np.corrcoef(255.0 - sk[..., 0].ravel(), grad.ravel())[0, 1] > 0.05


def test_variants_are_seeded_crops(domain_set, tmp_path):
    ds = domain_set
    for r in _rows(ds, "photo", variant=1).itertuples():
        rec = json.loads(r.recipe)
        w, h = Image.open(rec["source"]).size
        left, top, right, bottom = rec["crop"]
        assert 0 <= left and right <= w and 0 <= top and bottom <= h
        assert 0.69 * min(w, h) <= right - left <= min(w, h)
    assert ds.stimuli.loc[ds.stimuli["variant"] == 1, "recipe"].map(
        lambda s: json.loads(s)["flip"]).nunique() <= 2


def test_from_a_dataset_folder_via_the_cli(tmp_path, capsys):
    # a dataset folder whose stimuli carry category and domain: only its "hvm" rows are rendered
    imgs = {f"{i}.png": np.asarray(Image.open(f).convert("RGB").resize((80, 60)))
            for i, f in enumerate(PHOTOS["object"] + PHOTOS["person"])}
    st = pd.DataFrame({"stimulus_id": [f"s{i}" for i in range(5)], "image": [f"{i}.png" for i in range(5)],
                       "category": ["object"] * 3 + ["person"] * 2,
                       "domain": ["hvm", "hvm", "other", "hvm", "hvm"]})
    write_dataset(str(tmp_path / "src"), meta={"name": "src", "stimulus_set": True}, stimuli=st,
                  neuroids=pd.DataFrame({"neuroid_id": [], "subject": [], "region": []}),
                  responses=None, images=imgs)
    rc = main(["data", "domains", str(tmp_path / "src"), str(tmp_path / "out"), "--domains",
               "grayscale,silhouette", "--size", "48", "--source-domain", "hvm", "--quiet",
               "--params", '{"grayscale": {}}'])
    assert rc == 0
    assert "12 images, 2 categories, 3 domains" in capsys.readouterr().out
    ds = load_dataset(str(tmp_path / "out"))
    assert sorted(ds.stimuli["domain"].unique()) == ["grayscale", "hvm", "silhouette"]
    assert set(ds.stimuli["source_id"]) == {"s0", "s1", "s3", "s4"}
    assert ds.meta["source_domain"] == "hvm"
    assert main(["data", "validate", str(tmp_path / "out")]) == 0
    assert "stimulus set" in capsys.readouterr().out


def test_clear_errors(tmp_path):
    (tmp_path / "flat").mkdir()
    shutil.copy(PHOTOS["person"][0], tmp_path / "flat")
    with pytest.raises(DatasetError, match="one sub-folder per category"):
        make_domain_set(str(tmp_path / "flat"), str(tmp_path / "o"), progress=False)
    src = photo_folder(tmp_path / "src")
    with pytest.raises(DatasetError, match="unknown domain.*cubism"):
        make_domain_set(src, str(tmp_path / "o"), domains=["cubism"], progress=False)
    with pytest.raises(DatasetError, match="unknown parameter.*'radius'.*noise"):
        make_domain_set(src, str(tmp_path / "o"), params={"noise": {"radius": 2}}, progress=False)
    with pytest.raises(DatasetError, match="does not exist"):
        make_domain_set(str(tmp_path / "nope"), str(tmp_path / "o"), progress=False)
    make_domain_set(src, str(tmp_path / "o"), domains=["grayscale"], size=32, progress=False)
    with pytest.raises(DatasetError, match="already exists"):
        make_domain_set(src, str(tmp_path / "o"), domains=["grayscale"], size=32, progress=False)


def test_writes_a_set_to_object_storage(tmp_path, s3_bucket):
    src = photo_folder(tmp_path / "src")
    uri = make_domain_set(src, f"{s3_bucket}/sets/photos", domains=["outline", "mosaic"], size=32,
                          progress=False)
    ds = load_dataset(uri)
    assert uri.startswith("s3://") and ds.n_stimuli == 3 * 7
    img = ds.read_image(int(np.flatnonzero(ds.stimuli["domain"] == "mosaic")[0]))
    assert img.size == (32, 32)
