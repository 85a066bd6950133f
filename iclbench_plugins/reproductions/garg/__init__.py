"""The reproduction of Garg et al. (2022), "What can Transformers learn in-context?": its
experiments (spec.toml beside this file) and its findings, each checked on our numbers with
a tolerance fixed before the numbers were seen.

Errors are a learner's mean squared error divided by the zero predictor's empirical one on the
same tasks (1 = predicting 0; Garg's figures divide by its expectation, d, the sparsity or 1,
which agrees in expectation). Curves are the error at every context length k = 1..N; single
numbers at k = N are paired differences on the same tasks.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import iclbench
from iclbench.plugin_api import Finding, Reproduction, Results

TF = "causal-tf"
TF_LONG = "causal-tf[points_start=26,points_inc=5]"  # Garg's curriculum for ReLU networks and trees
LASSO = "lasso[alpha=0.01]"  # the alpha Garg's figures plot
CURVE_TOL = 0.05  # "matches": curves at most this far apart at every k (Garg Figs 2, 5: the curves overlap)
OOD_TOL = 0.1  # "robust": within this of least squares at k = N under each OOD prompt (Garg Fig 4)
LASSO_TOL = 0.1  # sparse: "approaches Lasso" (Garg Fig 3: between least squares and Lasso, near Lasso)
UNTRAINED = 0.9  # a trained model whose error at k = N stays above 0.9 never left the zero plateau
FUNCTION_CLASSES = {"garg-linear": "standard", "garg-sparse": "sparsity=3", "garg-relu": "relu", "garg-tree": "tree",
                    "garg-classification": "classification"}
MODEL = {"garg-linear": TF, "garg-sparse": TF, "garg-relu": TF_LONG, "garg-tree": TF_LONG,
         "garg-classification": TF}  # the spec's causal-tf per suite


def budget_note(r: Results) -> str:
    """How far the run's training is from Garg's (500 000 steps of a 9.5 M-parameter model)."""
    steps = r.meta.get("budget_values", {}).get("train_steps")
    if r.meta.get("budget") == "full":
        return ""
    return (f"; the {r.meta.get('budget')} budget trains {TF} {steps} steps at 3 layers, width 64, against Garg's "
            "500 000 at 12 layers, width 256")


class Garg(Reproduction):
    name = "garg"
    spec_file = files(__name__) / "spec.toml"

    def figures(self, r: Results, folder: Path) -> list[Path]:
        from .figures import function_class_figure  # plotting only when publishing

        found = function_class_figure(r, folder, FUNCTION_CLASSES)
        return [found] if found is not None else []

    def findings(self, r: Results) -> list[Finding]:
        return self.check([
            (f"trained Transformer within {CURVE_TOL} of least squares at every context length on linear functions "
             "(Fig 2)", self.linear),
            (f"trained Transformer within {OOD_TOL} of least squares at k = N under every OOD prompt of garg-linear "
             "(Fig 4)", self.ood),
            (f"sparse linear (k = 3): Transformer below least squares at every k from 5 to d - 1, and within "
             f"{LASSO_TOL} of Lasso at every k (Fig 3)", self.sparse),
            (f"two-layer ReLU networks: Transformer at most {CURVE_TOL} above the ReLU network trained in context, "
             "at every k (Fig 5)", self.relu),
            ("decision trees: Transformer below the greedy tree and gradient boosting at k = N, paired CI "
             "excluding 0, having left the zero predictor's plateau (Fig 5)", self.trees),
        ], r)

    @staticmethod
    def trained(r: Results, suite: str) -> str:
        """'' if causal-tf left the zero plateau on `suite`, else why not."""
        curve = r.prefix_error(MODEL[suite], suite, FUNCTION_CLASSES[suite])
        return "" if curve[-1] < UNTRAINED else f"{TF} never left the zero-predictor plateau (error {curve[-1]:.2f} at k = N)"

    @classmethod
    def matches(cls, r: Results, suite: str, reference: str, tol: float, two_sided: bool = True) -> tuple[str, bool, str]:
        """(ours, holds, why) for causal-tf's curve against `reference`'s on `suite`."""
        task = FUNCTION_CLASSES[suite]
        ours, ref = r.prefix_error(MODEL[suite], suite, task), r.prefix_error(reference, suite, task)
        ks = range(1, len(ours) + 1)
        gaps = [ours[k - 1] - ref[k - 1] for k in ks]
        k, gap = max(zip(ks, gaps), key=lambda kg: abs(kg[1]) if two_sided else kg[1])
        text = (f"worst k = {k}: {ours[k - 1]:.3f} vs {reference} {ref[k - 1]:.3f} ({gap:+.3f}); "
                f"at k = {len(ours)}: {ours[-1]:.3f} vs {ref[-1]:.3f}")
        holds = (abs(gap) if two_sided else gap) < tol
        why = "" if holds else (cls.trained(r, suite) or f"the curves part by {gap:+.3f} at k = {k}") + budget_note(r)
        return text, holds, why

    @classmethod
    def linear(cls, r: Results) -> Finding:
        return Finding("", *cls.matches(r, "garg-linear", "least-squares", CURVE_TOL))

    @classmethod
    def ood(cls, r: Results) -> Finding:
        columns = sorted({x["task_label"] for x in r.records if x["suite"] == "garg-linear"} - {"standard"})
        if not columns:
            raise LookupError("no garg-linear records")
        gap = {}
        for c in columns:
            p = r.paired(TF, "least-squares", "garg-linear", c)
            gap[c] = p.diff / r.mean("zero", "garg-linear", c)  # in units of the zero predictor's error
        failing = sorted((c for c in columns if abs(gap[c]) >= OOD_TOL), key=lambda c: -abs(gap[c]))
        worst = max(columns, key=lambda c: abs(gap[c]))
        ours = f"worst {worst}: {gap[worst]:+.3f}; {len(columns) - len(failing)} of {len(columns)} prompts within"
        why = ""
        if failing:
            why = "outside the tolerance: " + ", ".join(f"{c} ({gap[c]:+.2f})" for c in failing[:6])
            why += (f" and {len(failing) - 6} more" if len(failing) > 6 else "") + budget_note(r)
        return Finding("", ours, not failing, why)

    @classmethod
    def sparse(cls, r: Results) -> Finding:
        task = FUNCTION_CLASSES["garg-sparse"]
        ours, ls = r.prefix_error(TF, "garg-sparse", task), r.prefix_error("least-squares", "garg-sparse", task)
        d = next(x["task_config"]["d"] for x in r.records if (x["suite"], x["task_label"]) == ("garg-sparse", task))
        below = [k for k in range(5, d) if ours[k - 1] >= ls[k - 1]]
        text, near, why = cls.matches(r, "garg-sparse", LASSO, LASSO_TOL, two_sided=False)
        text = f"vs Lasso (alpha = 0.01): {text}; not below least squares at k = {below or 'none'}"
        holds = near and not below
        if below and not why:
            why = f"{TF} is not below least squares at k = {', '.join(map(str, below[:6]))}" + budget_note(r)
        return Finding("", text, holds, why)

    @classmethod
    def relu(cls, r: Results) -> Finding:
        return Finding("", *cls.matches(r, "garg-relu", "relu-nn", CURVE_TOL, two_sided=False))

    @classmethod
    def trees(cls, r: Results) -> Finding:
        parts, holds = [], True
        for ref in ("tree", "boosting"):
            p = r.paired(MODEL["garg-tree"], ref, "garg-tree", "tree")
            parts.append(f"vs {ref}: {p.text()}")
            holds = holds and p.diff + p.ci < 0
        untrained = cls.trained(r, "garg-tree")  # below baselines that are worse than 0 is not Garg's finding
        holds = holds and not untrained
        why = "" if holds else (untrained or f"{TF} is not below both") + budget_note(r)
        return Finding("", "; ".join(parts), holds, why)


@iclbench.hookimpl
def register_reproductions(register) -> None:
    register(Garg)
