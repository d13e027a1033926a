"""Shared by the control tests (tests/control/): the planted recording's models and layer."""
MODEL_A = "timm:test_byobnet@random"
MODEL_B = "timm:test_byobnet@random#1"
PLANTED_LAYER = "stages.2.0"
