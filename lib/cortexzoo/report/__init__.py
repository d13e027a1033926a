"""Tables and plots from the scores table."""
from .plots import plot_depth
from .tables import best_layers, format_leaderboard, leaderboard

__all__ = ["best_layers", "format_leaderboard", "leaderboard", "plot_depth"]
