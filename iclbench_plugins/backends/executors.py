"""The `ray` execution backend (the default, `local`, is the core's: `iclbench.local_executor`).

`ray` runs each (learner, suite, seed) unit as a Ray task with its own CPUs and GPU fraction, retried from its last checkpoint when
its worker dies, on a local cluster or an existing one (`--ray-address auto`); ray is imported
only when chosen (`pip install iclbench[ray]`).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import iclbench
from iclbench.plugin_api import Executor, ExecutorError, OrderedMerge, Outcome, PluginSource, Resources


def import_ray():
    """The ray module, or an error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ExecutorError("--executor ray needs the ray package: pip install iclbench[ray]") from None
    return ray


def forwarded_environment() -> dict[str, str]:
    """The driver's ICLBENCH_* variables (plugin selection, tracking), which units on other
    machines would not inherit."""
    return {k: v for k, v in os.environ.items() if k.startswith("ICLBENCH_")}


class RayExecutor(Executor):
    name = "ray"
    description = "each (learner, suite, seed) a Ray task with --cpus-per-unit / --gpus-per-unit (pip install iclbench[ray])"

    def __init__(self, options=None) -> None:
        super().__init__(options)
        address_parts(self.options.address)
        if self.options.stack_seeds:
            raise ExecutorError("--stack-seeds needs the local executor: a Ray unit trains one seed")
        self.ray = import_ray()

    def evaluate(self, catalog, plans, store, cache, progress=None, announce=None) -> Outcome:
        from iclbench.plugin_api import pair_twins, plan_units

        say = progress or (lambda msg: None)
        resources = self.options.resources.for_device(plans[0].device) if plans else self.options.resources
        slots = pair_twins([slot for plan in plans for slot in plan_units(catalog, plan, store, progress)])
        for i in range(len(plans)):
            if announce:
                announce(i)
        done: dict[int, tuple[list, list]] = {}  # slot -> (records, failure lines)
        if any(slot.unit for slot in slots):
            started = self.connect(resources)
            try:
                done = self.run(slots, self.shipment(store, cache, resources), resources, store, say)
            finally:
                if started:
                    self.ray.shutdown()
        reused = sum(len(slot.stored) for slot in slots)
        if reused:
            say(f"reused {reused} records stored in {store.path} (--force recomputes)")
        outcome = Outcome()
        for i, slot in enumerate(slots):
            records, failures = done.get(i, ([], []))
            twin = [] if slot.twin is None else done.get(slot.twin, ([], []))[0]
            outcome.records += records + slot.stored + twin
            outcome.failures += failures
        return outcome

    def shipment(self, store, cache, resources: Resources):
        """What every unit of this run shares; paths absolute, as workers start elsewhere."""
        from iclbench.plugin_api import compiling
        from iclbench.plugin_api import Shipment, units_folder

        return Shipment(tuple(PluginSource.read(f) for f in self.options.plugin_files),
                        None if cache is None else str(Path(cache).resolve()), str(units_folder(store)),
                        compiling(), resources.threads, "cuda" if resources.gpus else None)

    def run(self, slots, shipment, resources: Resources, store, say) -> dict[int, tuple[list, list]]:
        """Run the units of `slots` as Ray tasks and merge each one's records as soon as the
        order allows; returns slot -> (records, failure lines)."""
        from iclbench.plugin_api import lost_unit, run_unit

        ray = self.ray
        options = {"num_cpus": resources.cpus, "num_gpus": resources.gpus, "max_retries": self.options.max_retries,
                   "retry_exceptions": [OSError]}  # a worker that dies, or a shared folder that hiccups
        if forwarded_environment():
            options["runtime_env"] = {"env_vars": forwarded_environment()}
        task = ray.remote(run_unit)
        shared = ray.put(shipment)
        merge, futures, done = OrderedMerge(store), {}, {}
        for i, slot in enumerate(slots):
            if slot.unit is None:
                merge.add(i, [])
            else:
                name = f"iclbench {slot.unit.label} {slot.unit.suite} seed {slot.unit.seed}"
                futures[task.options(name=name, **options).remote(slot.unit, shared)] = i
        total, start = len(futures), time.perf_counter()
        say(f"running {total} units on Ray, each with {resources.cpus:g} CPU and {resources.gpus:g} GPU")
        try:
            while futures:
                (ready,), _ = ray.wait(list(futures), num_returns=1)
                i = futures.pop(ready)
                slot = slots[i]
                try:
                    result = ray.get(ready)
                    how = f"{len(result.records)} records"
                except ray.exceptions.RayError as err:  # its retries are spent: stored as failed records
                    result = lost_unit(slot, err)
                    how = f"FAILED: {type(getattr(err, 'cause', None) or err).__name__}"
                say(f"[{total - len(futures)}/{total}] {slot.unit.label} on {slot.unit.suite}, seed {slot.unit.seed}: "
                    f"{how} ({time.perf_counter() - start:.0f} s)")
                done[i] = (result.records, result.failures)
                for j in merge.add(i, result.records):
                    if slots[j].unit is not None:  # its records are in results.jsonl now: its own file goes
                        for rec in done[j][0]:
                            slots[j].evaluation.report(rec)
                        Path(shipment.units, f"{slots[j].unit.key}.jsonl").unlink(missing_ok=True)
        except BaseException:
            for future in futures:  # stop what runs: its checkpoints stay, and a rerun resumes from them
                ray.cancel(future, force=True)
            raise
        return done

    def connect(self, resources: Resources) -> bool:
        """Join the cluster at --ray-address (or start a local one); True if this call started
        Ray, which then stops it again. Resources no node offers are an error, not a hang."""
        ray, address = self.ray, self.options.address
        started = False
        check_reachable(address)
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False} if address is None else {}
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, ValueError, RuntimeError) as err:
                raise ExecutorError(f"--ray-address {address}: cannot connect to a Ray cluster: {err}") from None
            started = True
        try:
            self.check_cluster(resources)
        except BaseException:
            if started:
                ray.shutdown()
            raise
        return started

    def check_cluster(self, resources: Resources) -> None:
        """Some live node must offer a unit's resources, or its tasks would wait forever."""
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        if any(n.get("CPU", 0) >= resources.cpus and n.get("GPU", 0) >= resources.gpus for n in nodes):
            return
        offer = ", ".join(f"{n.get('CPU', 0):g} CPU / {n.get('GPU', 0):g} GPU" for n in nodes) or "no node"
        raise ExecutorError(f"no node of the Ray cluster offers --cpus-per-unit {resources.cpus:g} and "
                            f"--gpus-per-unit {resources.gpus:g} (nodes: {offer})")


def address_parts(address: str | None) -> tuple[str, int] | None:
    """(host, port) of a HOST:PORT --ray-address; None for `auto` or none."""
    if address is None or address == "auto":
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--ray-address must be auto or HOST:PORT, got {address!r}")
    return host, int(port)


def check_reachable(address: str | None, timeout: float = 10.0) -> None:
    """A HOST:PORT address must accept a connection: Ray itself would retry it for minutes."""
    parts = address_parts(address)
    if parts is None:
        return
    try:
        socket.create_connection(parts, timeout=timeout).close()
    except OSError as err:
        raise ExecutorError(f"--ray-address {address}: nothing answers there ({err.strerror or err}); "
                            "is `ray start --head` running on that host?") from None


@iclbench.hookimpl
def register_executors(register):
    register(RayExecutor)
