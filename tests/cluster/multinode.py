"""Fault-injection scenarios on a real local multi-node Ray cluster (run as a subprocess).

``python tests/cluster/multinode.py WORKDIR [SCENARIO ...]`` starts a head node without
CPUs (it hosts the GCS, the driver and Ray's zero-CPU controllers, so every task, actor,
trial and training worker lands on a worker node) and two one-CPU worker nodes, all on
loopback under the private temp dir given by ``RAY_TMPDIR``, and runs the scenarios one
after another on that cluster. In each, a background thread kills a worker node (every
Ray process of it, with SIGKILL) at a moment when the job provably runs on that node,
then adds a replacement node, as an autoscaler would. ``WORKDIR/report.json`` records,
per scenario, what was killed, when and while doing what (or the traceback); the test
asserts on the results stores themselves.

Scenarios (each small enough for a shared 2-core machine):

``scan``   ``run_scan(engine="ray")`` of two models (Ray Data decode tasks and a model
           actor pool): killed once the first model's scores are written, while a model
           actor of the second model's pipeline runs a batch on the node.
``tune``   ``run_tune`` (Ray Tune + Optuna + ASHA), 4 trials of 0.5 CPU: killed from
           Tune's own checkpoint callback, when a trial on the node has reported its
           first epoch with its checkpoint (before ASHA's first rung): the trial's
           training thread then waits in its report for the driver, so the trial is
           provably RUNNING when its node dies, and Tune restarts it from that checkpoint.
``twins``  ``train_family``: one Ray Train ``TorchTrainer`` with 2 DDP workers (gloo), one
           per worker node: killed once the controller has registered the first
           checkpoint, while a training worker runs on the node.

It runs in a subprocess so that the test process keeps its own session Ray
(``ray_local``) and so that a hung cluster can be killed as a whole.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import sys
import threading
import time
import traceback
from typing import Any, Callable

for _k, _v in {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
               "RAY_USAGE_STATS_ENABLED": "0", "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
               "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}.items():
    os.environ.setdefault(_k, _v)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Ray process titles of the work each scenario does on worker nodes
WORK_TITLES = {
    # Ray Data's model actor while it runs a batch (MapWorker.submit)
    "scan": r"ray::MapWorker\(MapBatches\(_ModelActor\)\)\.submit",
    # a (model, layer) scoring task (scan/workers.py names them)
    "scan_scoring": r"ray::cortexzoo-score",
    "tune": r"ray::ImplicitFunc|ray::_trial",      # a function trainable's actor
    "twins": r"ray::RayTrainWorker",
}

# A dead raylet refuses connections at once, so three failed 1 s checks declare its node
# dead in about 3 s instead of Ray's default ~30 s; the 5 s timeout keeps a slow but live
# node of a loaded machine from being declared dead.
SYSTEM_CONFIG = {"health_check_initial_delay_ms": 1000, "health_check_period_ms": 1000,
                 "health_check_timeout_ms": 5000, "health_check_failure_threshold": 3}

WORKER_NODE = dict(num_cpus=1, object_store_memory=200 << 20)


def _log(msg: str) -> None:
    print(f"[multinode {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class LocalCluster:
    """A head without CPUs plus ``n_workers`` one-CPU worker nodes, on loopback."""

    def __init__(self, n_workers: int = 2):
        from ray.cluster_utils import Cluster

        self.cluster = Cluster(initialize_head=True, head_node_args=dict(
            num_cpus=0, include_dashboard=False, object_store_memory=200 << 20,
            _system_config=SYSTEM_CONFIG))
        self.workers = [self.cluster.add_node(**WORKER_NODE) for _ in range(n_workers)]
        self.cluster.wait_for_nodes()

    def connect(self) -> None:
        import ray

        ray.init(address=self.cluster.address, log_to_driver=False)

    def add_worker(self):
        # Starting a node installs signal handlers unless told not to, and only the main
        # thread may; shutdown() (and the test's sweep of this temp dir) still stops it.
        main = threading.current_thread() is threading.main_thread()
        saved = self.cluster._shutdown_at_exit
        self.cluster._shutdown_at_exit = saved and main
        try:
            node = self.cluster.add_node(**WORKER_NODE)
        finally:
            self.cluster._shutdown_at_exit = saved
        self.workers.append(node)
        return node

    def shutdown(self) -> None:
        import ray

        ray.shutdown()
        self.cluster.shutdown()


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc (Linux)."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    return kids


def _title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def node_processes(node) -> list[tuple[int, str]]:
    """(pid, title) of every live process under the node's raylet (its Ray workers)."""
    from ray._private import ray_constants

    kids = _children()
    out, stack = [], [info.process.pid for info in
                      node.all_processes.get(ray_constants.PROCESS_TYPE_RAYLET, [])]
    while stack:
        for c in kids.get(stack.pop(), []):
            out.append((c, _title(c)))
            stack.append(c)
    return out


class NodeKiller(threading.Thread):
    """Kills a worker node (SIGKILL to all its processes) as soon as ``ready(node)``
    returns a description of the job's work running on it (see ``node_processes``);
    then adds a replacement worker node. The description is recorded in ``event``."""

    def __init__(self, lc: LocalCluster, ready: Callable[[Any], dict | None],
                 timeout_s: float = 300.0, replace: bool = True):
        super().__init__(daemon=True)
        self.lc, self.ready = lc, ready
        self.timeout_s, self.replace = timeout_s, replace
        self.titles: set[str] = set()
        self.finished = threading.Event()  # set when the job returns
        self.event: dict[str, Any] = {"killed": False}
        self.error: str | None = None
        self._lock = threading.Lock()  # one kill, from this thread or from kill_now

    def __enter__(self) -> "NodeKiller":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.finished.set()
        self.join(timeout=120)
        if self.is_alive():
            self.error = (self.error or "") + "the killer thread did not finish in 120 s"

    def kill_now(self, victim, info: dict) -> bool:
        """Kill ``victim`` from the caller's thread (once per killer); True if it did."""
        with self._lock:
            if self.event["killed"]:
                return False
            self._kill(victim, info)
            return True

    def _kill(self, victim, info: dict) -> None:
        now = time.time()
        self.event.update(killed=True, at=now, node_id=victim.node_id, **info)
        _log(f"killing node {victim.node_id[:12]}: {info}")
        self.lc.cluster.remove_node(victim, allow_graceful=False)
        self.lc.workers.remove(victim)
        self.event["remove_s"] = time.time() - now
        if self.replace:
            node = self.lc.add_worker()
            self.event.update(replacement=node.node_id, replaced_at=time.time())
            _log(f"replacement node {node.node_id[:12]} joined")

    def run(self) -> None:
        try:
            self._run()
        except Exception:  # noqa: BLE001 - reported to the test through report.json
            self.error = traceback.format_exc()
            _log(f"killer failed:\n{self.error}")

    def _run(self) -> None:
        t0 = time.time()
        while not self.finished.is_set() and time.time() - t0 < self.timeout_s:
            with self._lock:
                if self.event["killed"]:  # by kill_now
                    return
                for victim in list(self.lc.workers):
                    info = self.ready(victim)
                    if info:
                        self._kill(victim, info)
                        return
                    self.titles.update(t.split(" ", 1)[0]
                                       for _, t in node_processes(victim))
            time.sleep(0.05)
        self.event["titles_seen"] = sorted(self.titles)
        _log("the job finished (or timed out) before a worker node was killed")


def _matching(node, scenario: str) -> list[str]:
    """Titles of the scenario's work processes on ``node``."""
    pattern = re.compile(WORK_TITLES[scenario])
    return [t for _, t in node_processes(node) if pattern.search(t)]


# --------------------------------------------------------------------------- scenarios

SCAN_MODELS = ["pixels", "torchvision:resnet18@random"]
# large enough that a batch of resnet18 takes a visible fraction of a second
SCAN_INPUT = 128


def make_scan_dataset(uri: str) -> str:
    from cortexzoo.scan.planted import make_planted_dataset

    return make_planted_dataset(uri, model="torchvision:resnet18@random", layer="layer2.0",
                                n_stimuli=48, image_size=SCAN_INPUT, n_neuroids=6, n_reps=2,
                                seed=5, input_size=SCAN_INPUT, n_pcs=4)


def scan_config(data: str, out: str, engine: str):
    from cortexzoo.features import ReductionConfig
    from cortexzoo.scan import ScanConfig
    from cortexzoo.scan.scoring import ScoringConfig

    return ScanConfig(data=data, out=out, models=list(SCAN_MODELS), engine=engine,
                      batch_size=8, input_size=SCAN_INPUT,
                      reduction=ReductionConfig(n_components=64),
                      scoring=ScoringConfig(reliability_splits=5, methods=("ridge_gcv",),
                                            inter_animal=False),
                      progress=False, plot=False)


def scenario_scan(lc: LocalCluster, work: str) -> dict[str, Any]:
    """A scan of two models; the node dies while the second model's actor runs on it."""
    from cortexzoo.store import ResultStore

    data = make_scan_dataset(os.path.join(work, "ds"))
    out = os.path.join(work, "results")
    store = ResultStore(out)

    def ready(node):
        # the first model's scores are written (so its pipeline is over), then the node
        # runs a batch of the next model's pipeline
        n = len(store.completed_units())
        running = _matching(node, "scan") if n else []
        return {"units_done": n, "processes": running} if running else None

    return _scan_with_a_kill(lc, ready, data, out)


def _scan_with_a_kill(lc: LocalCluster, ready, data: str, out: str) -> dict[str, Any]:
    """Run the scenario's scan while a NodeKiller waits for ``ready`` on a node."""
    from cortexzoo.scan import run_scan

    t0 = time.time()
    with NodeKiller(lc, ready) as killer:
        res = run_scan(scan_config(data, out, "ray"))
    return {"seconds": time.time() - t0, "out": out, "data": data,
            "written_units": res.written_units, "skipped_units": res.skipped_units,
            "kill": killer.event, "killer_error": killer.error}


def scenario_scan_scoring(lc: LocalCluster, work: str) -> dict[str, Any]:
    """The same scan; the node dies while a (model, layer) scoring task runs on it."""
    data = make_scan_dataset(os.path.join(work, "ds"))
    out = os.path.join(work, "results")

    def ready(node):
        running = _matching(node, "scan_scoring")
        return {"processes": running} if running else None

    return _scan_with_a_kill(lc, ready, data, out)


TUNE_TRIALS, TUNE_EPOCHS, TUNE_GRACE = 4, 4, 2


def scenario_tune(lc: LocalCluster, work: str) -> dict[str, Any]:
    """A 4-trial campaign; the node dies while a trial trains on it."""
    from ray import tune

    from cortexzoo.training.demo import make_planted_dataset
    from cortexzoo.training.space import load_space
    from cortexzoo.training.tune import run_tune

    data = make_planted_dataset(os.path.join(work, "ds"), n_stimuli=160, size=32, blocks=2,
                                n_neuroids=8)
    out = os.path.join(work, "results")
    space = load_space(os.path.join(ROOT, "tune_spaces", "tiny.yaml"))
    space = dataclasses.replace(space, base=space.base.replace(epochs=TUNE_EPOCHS),
                                scheduler={**space.scheduler, "grace_period": TUNE_GRACE})

    class Trials(tune.Callback):
        """Kills the node of the first trial that checkpoints an epoch before ASHA's
        first rung, from inside Tune's result handling, and records which trials Tune
        recovered. Tune calls this in the driver's main thread before it asks the trial
        for its next result (the decision waits for the checkpoint), and a function
        trainable's training thread waits in its report until asked: so the trial is
        RUNNING at that epoch, and can neither finish nor be stopped by ASHA, while its
        node dies. (Killing from a polling thread instead raced with that: a trial seen
        at epoch 1 could already have reached ASHA's rung and been stopped, hence never
        recovered.)"""

        def __init__(self, killer: "NodeKiller"):
            self.killer = killer
            self.recovered: list[str] = []

        def __getstate__(self):  # Tune pickles callbacks with its state; a cluster won't
            return {**self.__dict__, "killer": None}

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            result = trial.last_result
            it = int(result["training_iteration"])
            if self.killer is None or self.killer.event["killed"] or it >= TUNE_GRACE:
                return
            pid = int(result["pid"])
            for node in list(self.killer.lc.workers):  # not ``lc``: no cluster in a closure
                titles = dict(node_processes(node))
                if pid in titles:
                    self.killer.kill_now(node, {"trials": {str(trial.trial_id): it},
                                                "processes": [titles[pid]]})
                    return

        def on_trial_recover(self, iteration, trials, trial, **info):
            self.recovered.append(str(trial.trial_id))

    t0 = time.time()
    # the killer thread never kills by itself here (it only watches); the callback does
    with NodeKiller(lc, lambda node: None) as killer:
        seen = Trials(killer)
        res = run_tune(data, space, TUNE_TRIALS, out, name="mn", verbose=0, callbacks=[seen])
    per_epoch = (res.trials["seconds"] / res.trials["epochs_run"].clip(lower=1)).tolist()
    return {"seconds": time.time() - t0, "out": out, "data": data, "n_trials": res.n_trials,
            "recovered": seen.recovered, "trial_seconds_per_epoch": per_epoch,
            "interrupted": res.interrupted, "scores_written": res.scores_written,
            "kill": killer.event, "killer_error": killer.error}


TWIN = dict(encoder="cnn", feature_dim=16, hidden_dim=16, batch_size=32, max_epochs=4,
            encoder_kwargs={"channels": [8, 8, 8], "dropout": 0.0, "batch_norm": False})


def scenario_twins(lc: LocalCluster, work: str) -> dict[str, Any]:
    """One twin, 2 DDP workers on 2 nodes; a node dies after the first checkpoint."""
    from cortexzoo.data.sessions_synth import make_synthetic_sessions
    from cortexzoo.twins.train import TwinsRunConfig, train_family

    data, out = os.path.join(work, "sessions"), os.path.join(work, "results")
    make_synthetic_sessions(data, n_animals=2, n_neurons=(6, 8), n_frames=800, height=18,
                            width=32, rate_scale=3.0, seed=1)

    def registered():
        # a checkpoint counts once Ray Train's controller has registered it (uploaded but
        # unregistered ones are not resumed from); the controller's snapshot says which
        for snap in glob.glob(os.path.join(out, "twins", "ray", "*",
                                           "checkpoint_manager_snapshot.json")):
            try:
                with open(snap) as f:
                    latest = json.load(f).get("latest_checkpoint_result") or {}
            except (OSError, ValueError):  # being rewritten
                continue
            if "epoch" in latest.get("metrics", {}):
                return {"registered_epoch": int(latest["metrics"]["epoch"])}
        return None

    run = TwinsRunConfig(data=data, out=out, encoders=["cnn"], seeds=[0], twin=dict(TWIN),
                         num_workers=2, cpus_per_worker=1, max_failures=2)

    def ready(node):
        # at least two epochs to go, so that the kill lands well before the end
        running = _matching(node, "twins")
        epoch = registered() if running else None
        if epoch and epoch["registered_epoch"] < TWIN["max_epochs"] - 2:
            return {**epoch, "processes": running}
        return None

    t0 = time.time()
    with NodeKiller(lc, ready) as killer:
        results = train_family(run)
    return {"seconds": time.time() - t0, "out": out, "data": data, "twin": TWIN,
            "results": [vars(r) for r in results],
            "kill": killer.event, "killer_error": killer.error}


SCENARIOS = {"scan": scenario_scan, "scan_scoring": scenario_scan_scoring, "tune": scenario_tune,
             "twins": scenario_twins}


def main(argv: list[str]) -> int:
    """Run the scenarios one after another on one cluster (its start-up is the slow
    part); ``WORKDIR/report.json`` holds one entry per scenario, rewritten after each."""
    work, names = argv[0], argv[1:] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {list(SCENARIOS)}")
    os.makedirs(work, exist_ok=True)
    report: dict[str, Any] = {}
    path = os.path.join(work, "report.json")

    def save():
        with open(path + ".tmp", "w") as f:
            json.dump(report, f, indent=1, default=str)
        os.replace(path + ".tmp", path)

    t0 = time.time()
    lc = LocalCluster()
    report["startup_s"] = time.time() - t0
    _log(f"cluster up in {report['startup_s']:.1f} s")
    try:
        lc.connect()
        for name in names:
            _log(f"scenario {name}")
            t1 = time.time()
            try:
                r = SCENARIOS[name](lc, os.path.join(work, name))
                r["ok"] = True
            except Exception:  # noqa: BLE001 - the test prints it
                r = {"ok": False, "error": traceback.format_exc()}
                _log(f"scenario {name} failed:\n{r['error']}")
            r["total_s"] = time.time() - t1
            report[name] = r
            save()
    finally:
        report["total_s"] = time.time() - t0
        save()
        lc.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
