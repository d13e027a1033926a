"""Tables and plots from the scores table."""
from .plots import plot_depth
from .tables import (best_layers, format_leaderboard, heldout_layers, leaderboard, scan_label,
                     with_scan)

__all__ = ["best_layers", "format_leaderboard", "heldout_layers", "leaderboard", "plot_depth",
           "scan_label", "with_scan"]
