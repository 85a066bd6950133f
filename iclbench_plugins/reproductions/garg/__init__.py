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
from iclbench.plugin_api import across_seeds, all_of, below, Finding, Reproduction, Results, within

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

    @staticmethod
    def curve_gaps(r: Results, spec: str, reference: str, suite: str, task: str) -> list[tuple[float, float]]:
        """Per k: `spec`'s error minus `reference`'s and its 95 % half-width: Student t over the
        seeds both have; with one seed, the two curves' bands combined as if independent (wider
        than the paired band, since errors on the same tasks correlate)."""
        a, b = r.records_by_seed(spec, suite, task), r.records_by_seed(reference, suite, task)
        seeds = [s for s in a if s in b and a[s].get("prefix_curve") and b[s].get("prefix_curve")]
        if not seeds:
            raise LookupError(f"no error-against-context curves of {r.label(spec)!r} and {r.label(reference)!r} "
                              f"on {suite}/{task}")
        ca, cb = [a[s]["prefix_curve"] for s in seeds], [b[s]["prefix_curve"] for s in seeds]
        out = []
        for k in range(len(ca[0]["error"])):
            gaps = [x["error"][k] - y["error"][k] for x, y in zip(ca, cb)]
            bands = [(x["ci95"][k] ** 2 + y["ci95"][k] ** 2) ** 0.5 for x, y in zip(ca, cb)]
            out.append(across_seeds(gaps, bands))
        return out

    @classmethod
    def matches(cls, r: Results, suite: str, reference: str, tol: float, two_sided: bool = True
                ) -> tuple[str, bool | None, str]:
        """(ours, holds, why) for causal-tf's curve against `reference`'s on `suite`, three-valued
        on each k's interval: holds when every k's lies inside the tolerance (below it, one-sided),
        does not hold when one lies outside, else inconclusive."""
        task = FUNCTION_CLASSES[suite]
        ours, ref = r.prefix_error(MODEL[suite], suite, task), r.prefix_error(reference, suite, task)
        gaps = cls.curve_gaps(r, MODEL[suite], reference, suite, task)
        test = within if two_sided else below
        verdicts = [test(g, ci, tol, 1, f"k = {k}", unit=lambda x: f"{x:+.3f}") for k, (g, ci) in enumerate(gaps, 1)]
        k, (gap, ci) = max(enumerate(gaps, 1), key=lambda kg: abs(kg[1][0]) if two_sided else kg[1][0])
        text = (f"worst k = {k}: {ours[k - 1]:.3f} vs {reference} {ref[k - 1]:.3f} ({gap:+.3f} ± {ci:.3f}); "
                f"at k = {len(ours)}: {ours[-1]:.3f} vs {ref[-1]:.3f}")
        v = all_of(verdicts)
        if v.holds:
            return text, True, ""
        undecided = [x for x in verdicts if x.holds is not True]
        shown = verdicts[k - 1] if verdicts[k - 1].holds is not True else undecided[0]  # the worst k's reason, if it has one
        why = (cls.trained(r, suite) if v.holds is False else "") or shown.why
        return text, v.holds, why + budget_note(r)

    @classmethod
    def linear(cls, r: Results) -> Finding:
        return Finding("", *cls.matches(r, "garg-linear", "least-squares", CURVE_TOL))

    @classmethod
    def ood(cls, r: Results) -> Finding:
        columns = sorted({x["task_label"] for x in r.records if x["suite"] == "garg-linear"} - {"standard"})
        if not columns:
            raise LookupError("no garg-linear records")
        gap, verdicts = {}, {}
        for c in columns:
            p = r.paired(TF, "least-squares", "garg-linear", c)
            unit = r.mean("zero", "garg-linear", c)  # the zero predictor's error on the column
            gap[c] = (p.diff / unit, p.ci / unit)
            verdicts[c] = within(*gap[c], OOD_TOL, p.seeds, c, unit=lambda x: f"{x:+.3f}")
        worst = max(columns, key=lambda c: abs(gap[c][0]))
        kept = sum(v.holds is True for v in verdicts.values())
        ours = f"worst {worst}: {gap[worst][0]:+.3f} ± {gap[worst][1]:.3f}; {kept} of {len(columns)} prompts within"
        failing = sorted((c for c in columns if verdicts[c].holds is False), key=lambda c: -abs(gap[c][0]))
        open_ = [c for c in columns if verdicts[c].holds is None]
        v = all_of(verdicts.values())
        why = "; ".join(part for part in (
            "outside the tolerance: " + ", ".join(f"{c} ({gap[c][0]:+.2f})" for c in failing[:6])
            + (f" and {len(failing) - 6} more" if len(failing) > 6 else "") if failing else "",
            "interval crosses the tolerance: " + ", ".join(f"{c} ({gap[c][0]:+.2f} ± {gap[c][1]:.2f})" for c in open_[:6])
            if open_ else "") if part)
        return Finding("", ours, v.holds, why + budget_note(r) if why else "")

    @classmethod
    def sparse(cls, r: Results) -> Finding:
        task = FUNCTION_CLASSES["garg-sparse"]
        ours, ls = r.prefix_error(TF, "garg-sparse", task), r.prefix_error("least-squares", "garg-sparse", task)
        d = next(x["task_config"]["d"] for x in r.records if (x["suite"], x["task_label"]) == ("garg-sparse", task))
        above_ls = [k for k in range(5, d) if ours[k - 1] >= ls[k - 1]]
        text, near, why = cls.matches(r, "garg-sparse", LASSO, LASSO_TOL, two_sided=False)
        text = f"vs Lasso (alpha = 0.01): {text}; not below least squares at k = {above_ls or 'none'}"
        holds = False if above_ls else near
        if above_ls and not why:
            why = f"{TF} is not below least squares at k = {', '.join(map(str, above_ls[:6]))}" + budget_note(r)
        return Finding("", text, holds, why)

    @classmethod
    def relu(cls, r: Results) -> Finding:
        return Finding("", *cls.matches(r, "garg-relu", "relu-nn", CURVE_TOL, two_sided=False))

    @classmethod
    def trees(cls, r: Results) -> Finding:
        parts, verdicts = [], []
        for ref in ("tree", "boosting"):
            p = r.paired(MODEL["garg-tree"], ref, "garg-tree", "tree")
            parts.append(f"vs {ref}: {p.text()}")
            verdicts.append(below(p.diff, p.ci, 0.0, p.seeds, f"vs {ref}", unit=lambda x: f"{x:+.4f}"))
        v = all_of(verdicts)
        untrained = cls.trained(r, "garg-tree")  # below baselines that are worse than 0 is not Garg's finding
        holds = False if untrained else v.holds
        why = "" if holds else (untrained or v.why) + budget_note(r)
        return Finding("", "; ".join(parts), holds, why)


@iclbench.hookimpl
def register_reproductions(register) -> None:
    register(Garg)
