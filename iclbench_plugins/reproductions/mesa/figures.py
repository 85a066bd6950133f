"""The mesa-optimization paper's depth picture, drawn from a reproduction's records: each
Transformer's loss over positions against its number of layers, beside the per-position
references (online GD, GD-3, GD++-3, online ridge) as horizontal lines."""

from __future__ import annotations

from pathlib import Path

from iclbench.plugin_api import across_seeds, decorate, Results, save, styles, subplots

FAMILIES = {  # name in the legend -> (layers, spec) of the Transformers drawn as one line
    "linear": [(1, "seq-tf"), (2, "seq-tf[layers=2]"), (4, "seq-tf[layers=4]")],
    "softmax": [(2, "seq-tf[attention=softmax,layers=2]"), (4, "seq-tf[attention=softmax,layers=4]")],
    "mesa": [(1, "seq-tf[attention=mesa]")],
    "hybrid (softmax, then mesa)": [(2, "seq-tf[attention=hybrid,layers=2]")],
}
REFERENCES = ["online-gd", "online-gd[steps=3]", "online-gdpp[steps=3]", "online-ridge"]
ALIGN = "online-ridge"  # the run that holds every learner above


def position_loss(r: Results, spec: str) -> tuple[float, float] | None:
    """(mean, 95 % CI) over seeds of `spec`'s loss over positions on lds, None if not run."""
    recs = r.records_by_seed(spec, "lds", align_to=ALIGN)
    if not recs:
        return None
    m = [x["metrics"] for x in recs.values()]
    return across_seeds([x["position_loss"] for x in m], [x["position_loss_ci95"] for x in m])


def depth_figure(r: Results, folder: Path) -> Path | None:
    """`loss-vs-depth.png`, or None when no Transformer was run."""
    points = {name: [(L, position_loss(r, spec)) for L, spec in line] for name, line in FAMILIES.items()}
    points = {name: [(L, v) for L, v in line if v is not None] for name, line in points.items()}
    if not any(points.values()):
        return None
    refs = {spec: position_loss(r, spec) for spec in REFERENCES}
    look = styles(list(FAMILIES) + REFERENCES)
    fig, ax = subplots(figsize=(5.8, 4.0))
    for name, line in points.items():
        if line:
            ax.errorbar([L for L, _ in line], [v[0] for _, v in line], yerr=[v[1] for _, v in line], label=name,
                        capsize=3, **look[name])
    for spec, v in refs.items():
        if v is not None:
            ax.axhline(v[0], color=look[spec]["color"], linestyle=":", linewidth=1.2, label=spec)
    ax.set_xticks([1, 2, 4])
    decorate(ax, "attention layers", "loss averaged over positions", "lds: Transformers by depth", log=True)
    return save(fig, folder / "loss-vs-depth.png", dpi=100)
