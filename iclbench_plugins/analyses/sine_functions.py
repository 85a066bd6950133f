"""The initial and final functions of the deep-feature learners on sine tasks (von Oswald et al.
2023, Sec. 5, Fig. 4): over a grid of query inputs, the function each model computes before
attention (its initial guess) and after, beside the true sine recovered from the context.
"""

from __future__ import annotations

import torch
from pydantic import Field

import iclbench
from iclbench.plugin_api import Analysis, AnalysisConfig, AnalysisContext, save, styles, subplots


SHORT_NAMES = {"mlp-lsa": "MLP+LSA", "mlp-gd": "MLP+GD"}  # learner name -> its name in the figure


class SineFunctions(Analysis):
    """The initial (before attention) and final functions of deep-feature learners on a few sine
    tasks, over a grid of query inputs, beside the true sine (recovered exactly from the context);
    the two learners' functions' mean squared difference on `measure_tasks` tasks, with the true
    sine's mean square (`truth_power`) to scale it by."""

    name = "sine-functions"

    class Config(AnalysisConfig):
        learners: list[str] = Field(default_factory=lambda: ["mlp-lsa", "mlp-gd"])
        tasks: int = Field(4, ge=1, le=12, description="how many tasks to plot")
        measure_tasks: int = Field(256, ge=1, description="tasks the functions' distances are measured on")
        grid: int = Field(200, ge=10, description="query inputs per task")

    def run(self, ctx: AnalysisContext) -> dict:
        ep = ctx.episode().slice(0, max(self.config.tasks, self.config.measure_tasks))
        lo, hi = float(ep.context_x.min()), float(ep.context_x.max())
        xs = torch.linspace(lo, hi, self.config.grid, device=ep.device, dtype=ep.context_x.dtype)
        grid = on_grid(ep, xs)  # (B * grid) tasks sharing each context
        truth = true_sine(ep, xs)  # (B, grid)
        functions: dict[str, dict[str, torch.Tensor]] = {}  # short name -> {"initial", "final"} (B, grid)
        mse = {}
        for spec in self.config.learners:
            learner = ctx.learner(spec)
            model = learner.model.to(device=ep.device, dtype=ep.context_x.dtype)
            with torch.no_grad():
                f = {"initial": model.initial(grid).reshape(ep.batch_size, -1),
                     "final": model.predict(grid).reshape(ep.batch_size, -1)}
            functions[SHORT_NAMES.get(learner.name, learner.label)] = f
            mse[f"{learner.label} final"] = float((f["final"] - truth).pow(2).mean())
        shown = ep.slice(0, self.config.tasks)
        amplitude, phase = sine_parameters(shown)
        path = ctx.figure_path("sine-functions")
        plot_functions(shown, xs, truth[:self.config.tasks],
                       {k: {kind: v[:self.config.tasks] for kind, v in f.items()} for k, f in functions.items()},
                       amplitude, phase, path)
        return {"figure": str(path), "learners": self.config.learners, "mse_final": mse,
                "distance": function_distances(list(functions.values())), "tasks": ep.batch_size,
                "truth_power": float(truth.double().pow(2).mean()),
                "amplitude": amplitude.tolist(), "phase": phase.tolist()}


def function_distances(functions: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Mean squared difference between the first two learners' initial and final functions
    over the grid (the paper compares the functions of MLP+LSA and MLP+GD, not only losses),
    and `<kind>_ci95`, its 95 % half-width over tasks."""
    if len(functions) < 2:
        return {}
    a, b = functions[:2]
    out = {}
    for kind in ("initial", "final"):
        per_task = (a[kind] - b[kind]).double().pow(2).mean(dim=1)  # (B,)
        out[kind] = float(per_task.mean())
        n = per_task.numel()
        out[f"{kind}_ci95"] = 1.96 * float(per_task.std()) / n ** 0.5 if n > 1 else float("nan")
    return out


def on_grid(ep: iclbench.Episode, xs: torch.Tensor) -> iclbench.Episode:
    """One task per (task, grid point): the task's context with query x = grid point."""
    G = xs.shape[0]
    rep = lambda t: t.repeat_interleave(G, dim=0)  # noqa: E731  (B*G, ...)
    qx = xs.repeat(ep.batch_size)[:, None]  # (B*G, 1)
    return iclbench.Episode(rep(ep.context_x), rep(ep.context_y), qx, torch.zeros_like(qx))


def sine_coefficients(ep: iclbench.Episode) -> torch.Tensor:
    """(B, 2) float64 (a cos phase, a sin phase), fitted exactly to each task's context:
    a sin(x + phase) = (a cos phase) sin x + (a sin phase) cos x."""
    x = ep.context_x[..., 0].double()  # (B, N)
    basis = torch.stack([torch.sin(x), torch.cos(x)], -1)  # (B, N, 2)
    return torch.linalg.lstsq(basis, ep.context_y.double()).solution[..., 0]  # (B, 2)


def sine_parameters(ep: iclbench.Episode) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) amplitude a and (B,) phase of each task's sine a sin(x + phase)."""
    coef = sine_coefficients(ep)  # (B, 2)
    return coef.norm(dim=1), torch.atan2(coef[:, 1], coef[:, 0])


def true_sine(ep: iclbench.Episode, xs: torch.Tensor) -> torch.Tensor:
    """(B, G) a sin(x + phase) on the grid."""
    coef, g = sine_coefficients(ep), xs.double()  # (B, 2), (G,)
    return (coef[:, :1] * torch.sin(g) + coef[:, 1:] * torch.cos(g)).to(xs.dtype)  # (B, G)


def plot_functions(ep: iclbench.Episode, xs: torch.Tensor, truth: torch.Tensor, functions: dict[str, dict[str, torch.Tensor]],
                   amplitude: torch.Tensor, phase: torch.Tensor, path) -> None:
    """One panel per task: the truth, each learner's initial (dashed) and final (solid) function,
    the context points; one legend below all panels, a title with the task's amplitude and phase."""
    B = ep.batch_size
    fig, axes = subplots(1, B, figsize=(3.2 * B, 3.2), squeeze=False)
    look = styles(list(functions))
    for b, ax in enumerate(axes[0]):
        ax.plot(xs.cpu(), truth[b].cpu(), color="k", lw=2, label="truth a sin(x + φ)")
        for i, (name, f) in enumerate(functions.items()):
            color = look[name]["color"]
            ax.plot(xs.cpu(), f["initial"][b].cpu(), color=color, ls="--", lw=1.2, label=f"{name}: initial (before attention)")
            ax.plot(xs.cpu(), f["final"][b].cpu(), color=color, lw=1.5, label=f"{name}: final")
        ax.scatter(ep.context_x[b, :, 0].cpu(), ep.context_y[b, :, 0].cpu(), c="k", s=14, zorder=5, label="context (x_i, y_i)")
        ax.set_title(f"task {b + 1}: a = {float(amplitude[b]):.2f}, φ = {float(phase[b]):.2f}", fontsize=9)
        ax.set_xlabel("x")
        ax.set_ylabel("y" if b == 0 else "")
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(labels), 3), fontsize=8)
    save(fig, path, dpi=110)


@iclbench.hookimpl
def register_analyses(register) -> None:
    register(SineFunctions)
