"""Plots of tuning campaigns and training runs (PNG bytes, for ``ResultStore.put_bytes``)."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

__all__ = ["plot_campaign", "plot_history"]


def _figure(ncols: int):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 3.8))
    return plt, fig, np.atleast_1d(axes)


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def plot_campaign(trials: pd.DataFrame, best_curve: pd.DataFrame | None = None,
                  name: str = "") -> bytes:
    """Validation EV of every trial in trial order (with the running best), and the best
    trial's learning curve (validation EV and training loss per epoch).

    Parameters
    ----------
    trials : one row per trial with ``trial_id``, ``best_val_ev``, ``status`` (and
        optionally ``test_ev``).
    best_curve : per-epoch rows of the best trial: ``training_iteration``, ``val_ev``,
        ``train_loss``.
    """
    plt, fig, axes = _figure(2)
    ax = axes[0]
    t = trials.reset_index(drop=True)
    x = np.arange(1, len(t) + 1)
    y = t["best_val_ev"].astype(float).to_numpy() if "best_val_ev" in t else np.full(len(t), np.nan)
    done = (t["status"] == "TERMINATED").to_numpy() if "status" in t else np.ones(len(t), bool)
    early = (done & (t["stop_reason"] == "scheduler").to_numpy()) if "stop_reason" in t \
        else np.zeros(len(t), bool)
    ax.scatter(x[done & ~early], y[done & ~early], c="C0", label="completed", zorder=3)
    ax.scatter(x[early], y[early], c="C1", marker="v", label="stopped by ASHA", zorder=3)
    if (~done).any():
        ax.scatter(x[~done], np.nan_to_num(y[~done], nan=np.nanmin(y) if np.isfinite(y).any() else 0),
                   c="C3", marker="x", label="errored / unfinished", zorder=3)
    running = np.fmax.accumulate(np.where(np.isfinite(y) & done, y, -np.inf))
    ax.step(x, np.where(np.isfinite(running), running, np.nan), where="post", c="k", lw=1,
            label="best so far")
    if "test_ev" in t:
        ax.scatter(x, t["test_ev"].astype(float), facecolors="none", edgecolors="C2",
                   label="test EV (not used to select)", zorder=2)
    ax.set_xlabel("trial (in creation order)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("validation EV (best epoch)")
    ax.set_title(f"campaign {name}: {len(t)} trials")
    ax.legend(fontsize=7)
    ax = axes[1]
    if best_curve is not None and len(best_curve):
        ep = best_curve["training_iteration"].to_numpy()
        ax.plot(ep, best_curve["val_ev"], "o-", c="C0", label="validation EV")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation EV")
        if "train_loss" in best_curve:
            ax2 = ax.twinx()
            ax2.plot(ep, best_curve["train_loss"], "s--", c="C1", label="training loss (MSE, z)")
            ax2.set_ylabel("training loss")
            ax2.legend(loc="lower right", fontsize=7)
        ax.legend(loc="upper left", fontsize=7)
        ax.set_title("best trial: learning curve")
    else:
        ax.text(0.5, 0.5, "no finished trial", ha="center", va="center")
        ax.set_axis_off()
    return _png(plt, fig)


def plot_history(history: list[dict], title: str = "") -> bytes:
    """Learning curve of one fine-tuning run (validation EV and training loss per epoch)."""
    df = pd.DataFrame(history).rename(columns={"epoch": "training_iteration"})
    trials = pd.DataFrame({"trial_id": ["run"], "best_val_ev": [df["val_ev"].max()],
                           "status": ["TERMINATED"]})
    return plot_campaign(trials, df, title)
