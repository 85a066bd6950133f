"""The reproduction of von Oswald et al. (2023): its experiments (spec.toml beside this file)
and its claims, each checked on our numbers with a tolerance fixed before the numbers were seen.

Comparisons between learners are paired: the difference of their losses on the same tasks,
with its 95 % CI, relative to the reference's loss. A claim that does not hold says why.
"""

from __future__ import annotations

import math
from importlib.resources import files
from itertools import combinations
from math import comb
from pathlib import Path
from typing import Callable

import iclbench
from iclbench.plugin_api import (above, across_seeds, all_of, below, Finding, point, Reproduction, Results, Verdict,
                                 within)
from .evidence import (close, cosine_above, cosine_below, found, interval, label_coupling_note, num, per_seed,
                       reference_lost, seed_verdicts, with_budget_notes)
from .figures import depth_figure, pool_figure, transition_figure

ONE_LAYER_TOL = 0.02  # trained 1-layer LSA vs GD-1 (the paper: the losses coincide)
DEEP_TOL = 0.05  # recurrent 2-layer vs GD++-2 and untied 5-layer vs GD++-5
DEPTHS = (2, 3, 4, 5)
RECURRENT = {2: "lsa[layers=2,recurrent=true]", 3: "lsa[layers=3,recurrent=true]",
             4: "lsa[layers=4,recurrent=true,clip=10]", 5: "lsa[layers=5,recurrent=true,clip=10]"}
OOD_TOL = {"lsa": ONE_LAYER_TOL, "lsa[layers=5,clip=10]": DEEP_TOL, **{RECURRENT[K]: DEEP_TOL for K in DEPTHS}}
DEEP_VARIANTS = ("lsa[layers=2,heads=2]", "lsa[layers=2,mlp=true]")  # Fig 8: deeper models with heads, with MLPs
LAYERNORM = ("layernorm-tf", "layernorm-tf[layers=2]")
LARGEST_SHIFTS = ("input range", "teacher scale")  # where the paper speculates LayerNorm helps (App A.9, Fig 14)
ALPHA = 0.05  # a rank test's level
UNTIED = {2: "lsa[layers=2]", 3: "lsa[layers=3]", 4: "lsa[layers=4,clip=10]", 5: "lsa[layers=5,clip=10]"}
POOLS = (128, 512, 2048, 8192)  # finite training sets of A.12, trained full-batch
SIGN_REVERSAL = -0.9  # cosine of the two softmax heads' off-diagonal terms: "almost perfect sign reversed"
COSINE = 0.99  # sensitivity alignment the paper reports for trained LSA against its GD counterpart
SINE_TOL, SINE_COSINE = 0.10, 0.95
FUNCTION_TOL = 0.10  # our threshold for "the functions agree": their mean squared difference / the target's mean square
PAPER_GROUPS = ("input range", "teacher scale", "input law", "reference inputs")  # the linear-ood shifts of Fig 6
EXTENSION_GROUPS = ("distractors", "context size")  # our own shifts: reported beside the paper's, never deciding
COPY_TOL = 0.05
REPEATED_TOL = 0.10
UNTRAINED = 0.9  # a trained model whose loss stays above 90 % of the zero predictor's never left the plateau

Check = Callable[[Results], Finding]


def pool_spec(P: int) -> str:
    """One LSA layer trained full-batch on a fixed set of P tasks."""
    return f"lsa[train.pool={P},train.batch_size={P}]"


class Paper(Reproduction):
    name = "paper"
    spec_file = files(__name__) / "spec.toml"

    def figures(self, r: Results, folder: Path) -> list[Path]:
        found = [depth_figure(r, folder, RECURRENT, UNTIED), pool_figure(r, folder, pool_spec, POOLS),
                 transition_figure(r, folder, {"one head": "lsa", "two heads": "lsa[heads=2]"},
                                   lambda curve: self.half_change_step(curve, "eval_loss"))]
        return [p for p in found if p is not None]

    def findings(self, r: Results) -> list[Finding]:
        """Each claim with its source in the paper; one that goes beyond what the paper states (a
        depth, column, statistic or threshold it never reports) is labelled an extension."""
        ood_cols = f"on every linear-ood column the paper runs ({', '.join(PAPER_GROUPS)}; {', '.join(EXTENSION_GROUPS)} beside)"
        claims: list[tuple[str, str, Check]] = [
            ("constructed LSA equals GD and GD++ (prediction difference < 1e-4 in float32)", "Sec 2, Prop 1; App A.10",
             self.construction),
            (f"trained 1-layer LSA within {ONE_LAYER_TOL:.0%} of tuned GD-1, sensitivity cosine > {COSINE}", "Sec 3, Fig 2",
             self.one_layer),
            (f"interpolated weights within {ONE_LAYER_TOL:.0%} of GD-1", "Sec 3, Fig 2; App A.3", self.interpolation),
            (f"recurrent 2-layer LSA within {DEEP_TOL:.0%} of GD++-2 and better than GD-2", "Sec 3, Fig 3a", self.recurrent),
            (f"untied 5-layer LSA within {DEEP_TOL:.0%} of per-step GD++-5 (same token clipping), cosine > {COSINE}",
             "Sec 3, Fig 3b", self.five_layers),
            (f"trained 1-layer LSA tracks GD-1 out of distribution, within {ONE_LAYER_TOL:.0%} {ood_cols}",
             "Sec 3, Fig 2, Fig 6a", lambda res: self.ood(res, "lsa", "gd")),
            (f"recurrent 2-layer LSA tracks GD++-2 out of distribution, within {DEEP_TOL:.0%} {ood_cols}",
             "Sec 3, Fig 6b; App A.2", lambda res: self.ood(res, "lsa[layers=2,recurrent=true]", "gd++[steps=2]")),
            (f"interpolated weights within {ONE_LAYER_TOL:.0%} of GD-1 {ood_cols}", "Fig 2 right, Fig 6a",
             self.interpolation_ood),
            (f"repeated damped LSA lowers the mean loss like GD (within {REPEATED_TOL:.0%} at every step)",
             "Sec 3, Fig 1; App A.6", lambda res: self.repeated(res, "loss")),
            (f"extension: ... and on the median task (within {REPEATED_TOL:.0%} at every step; the paper shows the mean)",
             "App A.6, Fig 10", lambda res: self.repeated(res, "median_loss")),
            ("on trained seeds: softmax 1 head worse than GD-1, 2 heads better than 1; LayerNorm worse than GD-1",
             "App A.9, Fig 12, Fig 14a", self.softmax),
            (f"MLP + LSA within {SINE_TOL:.0%} of MLP + GD on sine waves, sensitivity cosine > {SINE_COSINE}",
             "Sec 3, Fig 4; App A.7", self.sine),
            (f"the copying circuit (copy-tf) reaches GD-1 within {COPY_TOL:.0%}", "Sec 4, Fig 5 left", self.copying),
            ("copy dependence rises before or with the loss drop, on every seed", "Sec 4, Fig 5 right", self.copy_first),
            (f"negative control: two linear layers on alternating tokens stay more than {COPY_TOL:.0%} above GD-1 (the "
             "paper could not train them to copy)", "Sec 4", self.copy_control),
            ("GD++'s curvature correction lowers the condition number of the context covariance (N = 25)",
             "App A.10, Fig 13 right", self.conditioning),
            (f"extension: depth sweep, recurrent K-layer LSA within {DEEP_TOL:.0%} of GD++-K and below GD-K, K = 2..5 (the "
             "paper reports K = 2 and 10)", "Sec 3, Fig 3a, Fig 7", self.depth_recurrent),
            (f"extension: depth sweep, untied K-layer LSA at most {DEEP_TOL:.0%} above GD++-K (shared rates), K = 2..5 (the "
             "paper reports 5 and 12 layers)", "Sec 3, Fig 3b, Fig 8", self.depth_untied),
            (f"extension: untied 5-layer LSA tracks per-step GD++-5 out of distribution, within {DEEP_TOL:.0%} {ood_cols} "
             "(the paper expects a worse match far from training for deep untied models)", "Fig 3b right, Fig 6c; App A.2",
             lambda res: self.ood(res, "lsa[layers=5,clip=10]", "gd++[steps=5,per_step=true,clip=10]")),
            (f"LSA with 2 heads, and with an MLP, within {ONE_LAYER_TOL:.0%} of GD-1; extension: sensitivity cosine > "
             f"{COSINE} (the paper reports their losses)", "App A.11, Fig 15", self.heads_and_mlp),
            ("2-layer LayerNorm Transformer worse than GD-2 and GD++-2", "App A.9, Fig 14b", self.layernorm_two),
            (f"finite training sets: LSA trained on {POOLS[0]} fixed tasks does not align with GD-1 (cosine < {COSINE}), "
             f"on {POOLS[-1]} it does (cosine > {COSINE}; extension: loss within {ONE_LAYER_TOL:.0%}). This follows "
             "Fig 16's caption; App A.12's text says even very few tasks align", "App A.12, Fig 16", self.pools),
            (f"two softmax heads reverse the signs of each other's off-diagonal eta W_KQ (cosine < {SIGN_REVERSAL}) on "
             "every trained seed", "App A.9, Fig 11", self.head_cancellation),
            (f"recurrent K-layer LSA tracks GD++-K out of distribution, within {DEEP_TOL:.0%} {ood_cols}, K = 3..5 (the "
             "paper: remarkably similar for depth > 1, the match worsening for deeper models)", "App A.2, Fig 7",
             self.ood_depths),
            (f"untied 2-layer LSA with 2 heads, and with MLPs, at most {DEEP_TOL:.0%} above GD++-2, as without them "
             "(the paper: qualitatively equivalent results)", "Sec 3, Fig 8", self.deep_variants),
            ("speculation: 1- and 2-layer LayerNorm Transformers below GD-1's loss on the largest input range and "
             "teacher scale (the paper speculates LayerNorm helps with larger inputs and targets)", "App A.9, Fig 14",
             self.layernorm_ood),
            (f"extension: two heads make the 1-layer LSA's loss drop earlier than one head on every pair of seeds (exact "
             f"one-sided rank test, p <= {ALPHA}; the paper: seed-dependent transitions with one head, mitigated by two)",
             "App A.11, Fig 15", self.phase_transitions),
            (f"interpolated weights of the recurrent 2-layer LSA (towards the GD++ construction) within {DEEP_TOL:.0%} of "
             "GD++-2", "Sec 3, Fig 3a; App A.3", self.interpolation_recurrent),
            ("the tuned gamma lowers the condition number of the task distribution's eigenvalue range, "
             "kappa++ = max f / min f with f(lambda) = lambda (1 - gamma lambda)^2, below gamma = 0's", "App A.10, Fig 13 "
             "left and centre", self.range_conditioning),
            (f"MLP + LSA's and MLP + GD's initial functions (read out after the MLP) agree, as their final ones do: "
             f"mean squared difference at most {FUNCTION_TOL:.0%} of the target sine's mean square (our threshold for "
             "the paper's 'surprising similarity')", "Sec 3, Fig 4", self.sine_functions),
        ]
        return self.check([(f"{text} ({source})", check) for text, source, check in claims], r)

    @staticmethod
    def construction(r: Results) -> Finding:
        a = r.mean("lsa-gd", "linear", metric="pred_diff", align_to="gd")
        b = r.mean("lsa-gd++[steps=2]", "linear", metric="pred_diff", align_to="gd++[steps=2]")
        v = point(max(a, b) < 1e-4, f"largest prediction difference {max(a, b):.1e}, above 1e-4")
        return found(f"pred_diff {a:.1e} (lsa-gd vs gd), {b:.1e} (lsa-gd++ vs gd++, 2 steps)", v)

    @staticmethod
    def one_layer(r: Results) -> Finding:
        p = r.paired("lsa", "gd", "linear")
        cos = interval(r, "lsa", "linear", "sens_cos", "gd")
        return found(f"{p.text()}; cosine {cos[0]:.4f}; {seed_verdicts(r, 'lsa', 'gd', 'linear', ONE_LAYER_TOL)}", all_of([
            close(p, ONE_LAYER_TOL, "loss vs GD-1"), cosine_above(cos, COSINE, "sensitivity cosine")]))

    @staticmethod
    def interpolated_vs_construction(r: Results, spec: str, tol: float, name: str) -> Finding:
        """The interpolation analysis of `spec`: the interpolated model's loss relative to its
        construction's (GD-1, or GD++-K for a recurrent model), decided on the interval over seeds."""
        label = r.label(spec)
        res = [x for x in r.analysis("interpolation") if x.get("learner") == label]
        if not res:
            raise LookupError(f"no interpolation analysis of {label!r}")
        rel = [x["loss_interpolated"] / x["loss_construction"] - 1 for x in res]  # one per seed
        interp = sum(x["loss_interpolated"] for x in res) / len(res)
        ref = sum(x["loss_construction"] for x in res) / len(res)
        mean, ci = across_seeds(rel, [float("nan")] * len(rel))
        ours = f"interpolated {interp:.4f} vs {name} {ref:.4f} ({mean:+.2%}" + (f" ± {ci:.2%}" if len(rel) > 1 else "") + \
            f"; per seed {', '.join(f'{x:+.2%}' for x in rel)})"
        if len(rel) == 1:
            return found(ours, point(abs(mean) < tol, f"interpolated loss {mean:+.2%} from {name}'s, on one seed "
                                                      "(no interval)"))
        return found(ours, within(mean, ci, tol, len(rel), f"interpolated loss vs {name}"))

    @classmethod
    def interpolation(cls, r: Results) -> Finding:
        return cls.interpolated_vs_construction(r, "lsa", ONE_LAYER_TOL, "GD-1")

    @classmethod
    def interpolation_recurrent(cls, r: Results) -> Finding:
        return cls.interpolated_vs_construction(r, RECURRENT[2], DEEP_TOL, "GD++-2")

    @staticmethod
    def interpolation_ood(r: Results) -> Finding:
        res = r.analysis("interpolation-ood")
        if not res:
            raise LookupError("no interpolation-ood analysis")
        groups = {x["task_label"]: x.get("group") for x in r.records if x["suite"] == "linear-ood"}
        rel = {t: sum(x["tasks"][t]["interpolated"] / x["tasks"][t]["construction"] for x in res) / len(res) - 1
               for t in res[0]["tasks"] if groups.get(t) not in EXTENSION_GROUPS}
        worst = max(rel, key=lambda t: abs(rel[t]))
        failing = sorted((t for t in rel if abs(rel[t]) >= ONE_LAYER_TOL), key=lambda t: -abs(rel[t]))
        ours = f"worst {worst}: {rel[worst]:+.2%}; {len(rel) - len(failing)} of {len(rel)} tasks within"
        why = "outside the tolerance: " + ", ".join(f"{t} ({rel[t]:+.1%})" for t in failing[:6])
        return found(ours, point(not failing, why))

    @staticmethod
    def recurrent(r: Results) -> Finding:
        pp = r.paired("lsa[layers=2,recurrent=true]", "gd++[steps=2]", "linear")
        gd2 = r.paired("lsa[layers=2,recurrent=true]", "gd[steps=2]", "linear")
        seeds = seed_verdicts(r, "lsa[layers=2,recurrent=true]", "gd++[steps=2]", "linear", DEEP_TOL)
        return found(f"vs GD++-2: {pp.text()}; vs GD-2: {gd2.text()}; {seeds}", all_of([
            close(pp, DEEP_TOL, "loss vs GD++-2"), below(gd2.diff, gd2.ci, 0.0, gd2.seeds, "loss − GD-2's", unit=num)]))

    @staticmethod
    def five_layers(r: Results) -> Finding:
        ref = "gd++[steps=5,per_step=true,clip=10]"
        p = r.paired("lsa[layers=5,clip=10]", ref, "linear")
        cos = interval(r, "lsa[layers=5,clip=10]", "linear", "sens_cos", ref)
        robust = {m: r.mean("lsa[layers=5,clip=10]", "linear", metric=m, align_to=ref) for m in ("loss_median", "loss_trimmed")}
        ours = (f"{p.text()}; cosine {cos[0]:.4f}; trained median {robust['loss_median']:.4f}, "
                f"1 %-trimmed mean {robust['loss_trimmed']:.4f}; "
                f"{seed_verdicts(r, 'lsa[layers=5,clip=10]', ref, 'linear', DEEP_TOL)}")
        v = with_budget_notes(all_of([close(p, DEEP_TOL, "loss vs per-step GD++-5"),
                                      cosine_above(cos, COSINE, "sensitivity cosine")]), r, ["lsa[layers=5,clip=10]"])
        if v.holds is not True:
            v = Verdict(v.holds, f"{v.why}; {per_seed(r, 'lsa[layers=5,clip=10]', ref, 'linear')}; the trained model's "
                                 "median task loss is "
                                 f"{robust['loss_median']:.4f} against its mean {p.diff + p.reference_loss:.4f}")
        return found(ours, v)

    @staticmethod
    def ood(r: Results, spec: str, reference: str) -> Finding:
        """Decided on the columns the paper runs (and the training distribution); the extension
        columns are shown beside, outside the verdict."""
        groups = {x["task_label"]: x.get("group") for x in r.records if x["suite"] == "linear-ood"}
        if not groups:
            raise LookupError("no linear-ood records")
        paired, diverged, ref_diverged = {}, [], []
        for t in sorted(groups):
            try:
                paired[t] = r.paired(spec, reference, "linear-ood", t)
            except LookupError:
                mine = r.records_by_seed(spec, "linear-ood", t, align_to=reference)
                if any(x.get("reference_status") == "diverged" for x in mine.values()):
                    ref_diverged.append(t)  # nothing to compare with: beside, like a column the reference lost
                elif any(x.get("status") == "diverged" for x in mine.values()):
                    diverged.append(t)  # no paired number: the learner's loss is not finite there
                else:
                    raise
        lost = [t for t in paired if groups[t] not in EXTENSION_GROUPS and reference_lost(r, paired[t], t)]
        tasks = [t for t in paired if groups[t] not in EXTENSION_GROUPS and t not in lost]
        if not tasks:
            raise LookupError(f"no linear-ood column where {reference} beats the zero predictor")
        verdicts = {t: close(paired[t], OOD_TOL[spec], t) for t in tasks}
        worst = max(tasks, key=lambda t: abs(paired[t].rel))
        kept = sum(v.holds is True for v in verdicts.values())
        beside = sorted((t for t in paired if t not in verdicts and t not in lost), key=lambda t: -abs(paired[t].rel))
        ours = f"worst {worst}: {paired[worst].text()}; {kept} of {len(tasks)} tasks within"
        if beside:
            ours += "; beside (extension): " + ", ".join(f"{t} {paired[t].rel:+.0%}" for t in beside[:4])
        if lost:
            ours += (f"; beside, where {reference} does no better than predicting zero (a relative tolerance means "
                     "nothing there): " + ", ".join(f"{t} {paired[t].rel:+.0%}" for t in lost[:4]))
        by_size = sorted(tasks, key=lambda t: -abs(paired[t].rel))
        failing = [t for t in by_size if verdicts[t].holds is False]
        open_ = [t for t in by_size if verdicts[t].holds is None]
        broken = [t for t in diverged if groups[t] not in EXTENSION_GROUPS]
        if broken:
            ours += f"; diverged on {len(broken)} column(s)"
        if ref_diverged:
            ours += f"; beside, where {reference} diverged: " + ", ".join(ref_diverged[:4])
        v = all_of(list(verdicts.values()) + [Verdict(False, "") for _ in broken])
        why = "; ".join(part for part in (
            f"{spec} diverged on " + ", ".join(broken[:6]) if broken else "",
            "outside the tolerance: " + ", ".join(f"{t} ({paired[t].rel:+.0%})" for t in failing[:6]) if failing else "",
            "interval crosses the tolerance: " + ", ".join(f"{t} ({paired[t].rel:+.1%} ± {paired[t].rel_ci:.1%})"
                                                          for t in open_[:6]) if open_ else "",
            label_coupling_note(r, spec, (failing + open_)[:3])) if part)
        return found(ours, Verdict(v.holds, why))

    @staticmethod
    def repeated(r: Results, key: str) -> Finding:
        res = [x for x in r.analysis("repeated") if key in x]
        if not res:
            raise LookupError(f"no repeated-application analysis with {key!r} curves")
        avg = lambda label, t: sum(x[key][label][t] for x in res) / len(res)  # noqa: E731
        T = len(res[0][key]["gd"])
        rels = [avg("trained", t) / avg("gd", t) - 1 for t in range(T)]
        worst = max(range(T), key=lambda t: abs(rels[t]))
        div = {k: sum(x["diverged_tasks"][k] for x in res) for k in ("trained", "gd")}
        n = sum(x["tasks"] for x in res)
        ours = (f"after {T} steps {avg('trained', -1):.4g} vs GD {avg('gd', -1):.4g} (from {avg('trained', 0):.4g}); "
                f"worst step {worst + 1}: {rels[worst]:+.1%}; {div['trained']} and {div['gd']} of {n} tasks end above "
                "their first-step loss")
        outside = [t + 1 for t in range(T) if abs(rels[t]) >= REPEATED_TOL]
        v = all_of([point(avg("trained", -1) < avg("trained", 0), "the repeated layer does not lower the loss"),
                    point(not outside, f"steps {outside} differ from GD by more than {REPEATED_TOL:.0%} (worst step "
                                       f"{worst + 1}: {rels[worst]:+.1%}); {div['trained']} of {n} tasks end above their "
                                       f"first-step loss under the trained layer, {div['gd']} under GD")])
        return found(ours, v)

    @staticmethod
    def trained_seeds(r: Results, spec: str) -> list[int]:
        """Seeds on which `spec` left the zero-predictor plateau (loss below 90 % of zero's)."""
        zero, loss = r.by_seed("zero", "linear"), r.by_seed(spec, "linear")
        return [s for s in loss if s in zero and loss[s] < UNTRAINED * zero[s]]

    @classmethod
    def softmax(cls, r: Results) -> Finding:
        one, two, ln = "softmax-tf", "softmax-tf[heads=2]", "layernorm-tf"
        seeds = {spec: cls.trained_seeds(r, spec) for spec in (one, two, ln)}
        n_seeds = len(r.by_seed("zero", "linear"))
        counts = ", ".join(f"{spec} {len(s)}/{n_seeds}" for spec, s in seeds.items())
        if not all(seeds.values()):
            untrained = [spec for spec, s in seeds.items() if not s]
            return Finding("", f"trained seeds: {counts}", False, f"no trained seed for {', '.join(untrained)}")
        p1, pln = r.paired(one, "gd", "linear", seeds=seeds[one]), r.paired(ln, "gd", "linear", seeds=seeds[ln])
        loss = {spec: r.by_seed(spec, "linear") for spec in (one, two)}
        m1, m2 = (sum(loss[s][k] for k in seeds[s]) / len(seeds[s]) for s in (one, two))
        cos = {spec: sum(r.by_seed(spec, "linear", metric="sens_cos", align_to="gd")[k] for k in seeds[spec]) / len(seeds[spec])
               for spec in (one, two)}
        ours = (f"trained seeds: {counts}; 1 head vs GD-1 {p1.text()}, cosine {cos[one]:.3f}; 2 heads {m2:.4f} vs "
                f"1 head {m1:.4f}, cosine {cos[two]:.3f}; LayerNorm vs GD-1 {pln.text()}")
        v = all_of([above(p1.diff, p1.ci, 0.0, p1.seeds, "1 head's loss − GD-1's", unit=num),
                    point(m2 < m1, f"2 heads' loss {m2:.4f} is not below 1 head's {m1:.4f}"),
                    above(pln.diff, pln.ci, 0.0, pln.seeds, "LayerNorm's loss − GD-1's", unit=num)])
        notes = [f"{n_seeds - len(s)} {spec} seed(s) never left the zero-predictor plateau and are left out"
                 for spec, s in seeds.items() if len(s) < n_seeds]
        return found(ours, Verdict(v.holds, "; ".join([v.why] * bool(v.why) + notes)))

    @staticmethod
    def sine(r: Results) -> Finding:
        p = r.paired("mlp-lsa", "mlp-gd", "sine")
        cos = interval(r, "mlp-lsa", "sine", "sens_cos", "mlp-gd")
        diff = r.mean("mlp-lsa", "sine", metric="pred_diff", align_to="mlp-gd")
        dist = [x["distance"] for x in r.analysis("sine-functions") if x.get("distance")]
        functions = "" if not dist else (
            "; functions' mean squared difference: initial {:.3g}, final {:.3g}".format(
                *(sum(d[k] for d in dist) / len(dist) for k in ("initial", "final"))))
        v = all_of([close(p, SINE_TOL, "loss vs MLP + GD"), cosine_above(cos, SINE_COSINE, "sensitivity cosine")])
        seeds = seed_verdicts(r, "mlp-lsa", "mlp-gd", "sine", SINE_TOL)
        return found(f"{p.text()}; cosine {cos[0]:.3f}, prediction difference {diff:.3f}{functions}; {seeds}", v)

    @staticmethod
    def sine_functions(r: Results) -> Finding:
        runs = [x for x in r.analysis("sine-functions") if x.get("distance") and x.get("truth_power")]
        if not runs:
            raise LookupError("no sine-functions analysis with the target's mean square")
        parts, verdicts = [], []
        for kind in ("initial", "final"):
            rel = [x["distance"][kind] / x["truth_power"] for x in runs]  # one per seed
            cis = [x["distance"].get(f"{kind}_ci95", float("nan")) / x["truth_power"] for x in runs]  # over tasks
            mean, ci = across_seeds(rel, cis)  # over seeds; one seed: its interval over tasks
            parts.append(f"{kind}: {mean:.3f} ± {ci:.3f} of the target's mean square"
                         + f" (per seed {', '.join(f'{x:.3f}' for x in rel)})")
            verdicts.append(below(mean, ci, FUNCTION_TOL, len(rel), f"{kind} functions", unit=num))
        return found(f"mean squared difference on {runs[0].get('tasks', '?')} tasks, {'; '.join(parts)}", all_of(verdicts))

    @staticmethod
    def copying(r: Results) -> Finding:
        p = r.paired("copy-tf", "gd", "alternating")
        return found(f"{p.text()}; {seed_verdicts(r, 'copy-tf', 'gd', 'alternating', COPY_TOL)}",
                     close(p, COPY_TOL, "loss vs GD-1"))

    @staticmethod
    def half_change_step(curve: list[dict[str, float]], column: str) -> float:
        """The first step where `column` has covered half its change from start to end."""
        first, last = curve[0][column], curve[-1][column]
        for row in curve:
            if abs(row[column] - first) >= 0.5 * abs(last - first):
                return row["step"]
        return curve[-1]["step"]

    @classmethod
    def copy_first(cls, r: Results) -> Finding:
        curves = r.curves("copy-tf", "alternating")
        if not curves:
            raise LookupError("no copy-tf training curves")
        steps = {s: (cls.half_change_step(c, "copy_next"), cls.half_change_step(c, "eval_loss")) for s, c in curves.items()}
        ours = "; ".join(f"seed {s}: copy at step {c:.0f}, loss drop at {l:.0f}" for s, (c, l) in steps.items())
        late = [s for s, (c, l) in steps.items() if c > l]
        return found(ours, point(not late, "the copy rose after the loss drop on " + ", ".join(
            f"seed {s} (step {steps[s][0]:.0f} against {steps[s][1]:.0f})" for s in late)))

    @staticmethod
    def copy_control(r: Results) -> Finding:
        """Linear attention alone cannot copy: it should stay more than COPY_TOL above GD-1."""
        p = r.paired("copy-tf[attention=linear]", "gd", "alternating")
        v = above(p.rel, p.rel_ci, COPY_TOL, p.seeds, "loss vs GD-1")
        seeds = seed_verdicts(r, "copy-tf[attention=linear]", "gd", "alternating", COPY_TOL, above)
        return found(f"{p.text()}; {seeds}", Verdict(v.holds, f"{v.why}; "
                     f"{per_seed(r, 'copy-tf[attention=linear]', 'gd', 'alternating')}" if v.why else ""))

    @staticmethod
    def conditioning(r: Results) -> Finding:
        res = r.analysis("gd++-conditioning")
        if not res:
            raise LookupError("no gd++-conditioning analysis")
        steps = len(res[0]["median_condition"])
        median = [sum(x["median_condition"][k] for x in res) / len(res) for k in range(steps)]
        ours = "median condition number " + " -> ".join(f"{m:.2f}" for m in median) + f" over {steps - 1} step(s)"
        return found(ours, point(median[-1] < median[0], f"the median condition number goes from {median[0]:.2f} "
                                                         f"to {median[-1]:.2f}"))

    @staticmethod
    def range_conditioning(r: Results) -> Finding:
        res = [x for x in r.analysis("gd++-conditioning") if "range_condition_tuned" in x]
        if not res:
            raise LookupError("no gd++-conditioning analysis with the eigenvalue range")
        logs = [math.log10(x["range_condition_tuned"] / x["range_condition_before"]) for x in res]  # one per seed
        mean, ci = across_seeds(logs, [float("nan")] * len(logs))
        ours = "kappa++ at the tuned gamma / at gamma = 0: " + ", ".join(
            f"{x['range_condition_tuned']:.3g} / {x['range_condition_before']:.3g} (gamma {x['gamma'][0]:.3g})" for x in res)
        if len(logs) == 1:
            return found(ours, point(mean < 0, f"log10 ratio {mean:+.3f} on one seed (no interval)"))
        return found(ours, below(mean, ci, 0.0, len(logs), "log10 kappa++ ratio", unit=num))

    @staticmethod
    def trained_steps(r: Results, spec: str) -> str:
        """` (N steps)`: how long `spec` trained, as its records' curves end (a reason names the
        budget); empty when no curve was stored."""
        steps = sorted({c[-1]["step"] for c in r.curves(spec, "linear").values() if c})
        return f" ({'/'.join(f'{s:.0f}' for s in steps)} steps)" if steps else ""

    @classmethod
    def depth_recurrent(cls, r: Results) -> Finding:
        parts, verdicts = [], []
        for K in DEPTHS:
            pp = r.paired(RECURRENT[K], f"gd++[steps={K}]", "linear")
            parts.append(f"K={K}: {pp.rel:+.1%} ± {pp.rel_ci:.1%}")
            try:  # paired against GD-K where the spec runs it so (K = 2), else the two means
                gd = r.paired(RECURRENT[K], f"gd[steps={K}]", "linear")
                below_gd = below(gd.diff, gd.ci, 0.0, gd.seeds, f"K={K} loss − GD-K's", unit=num)
            except LookupError:
                loss, gd_loss = r.mean(RECURRENT[K], "linear"), r.mean(f"gd[steps={K}]", "linear")
                below_gd = point(loss < gd_loss, f"K={K} loss {loss:.4f} not below GD-K's {gd_loss:.4f}")
            verdicts.append(with_budget_notes(all_of([close(pp, DEEP_TOL, f"K={K}{cls.trained_steps(r, RECURRENT[K])} "
                                                                          "vs GD++-K"), below_gd]), r, [RECURRENT[K]]))
        return found("vs GD++-K: " + "; ".join(parts), all_of(verdicts))

    @classmethod
    def depth_untied(cls, r: Results) -> Finding:
        parts, verdicts = [], []
        for K in DEPTHS:
            p = r.paired(UNTIED[K], f"gd++[steps={K}]", "linear")
            parts.append(f"K={K}: {p.rel:+.1%} ± {p.rel_ci:.1%}")
            verdicts.append(with_budget_notes(below(p.rel, p.rel_ci, DEEP_TOL, p.seeds,
                                                    f"K={K}{cls.trained_steps(r, UNTIED[K])} vs GD++-K"), r, [UNTIED[K]]))
        return found("vs GD++-K: " + "; ".join(parts), all_of(verdicts))

    @staticmethod
    def heads_and_mlp(r: Results) -> Finding:
        parts, verdicts = [], []
        for spec in ("lsa[heads=2]", "lsa[mlp=true]"):
            p = r.paired(spec, "gd", "linear")
            cos = interval(r, spec, "linear", "sens_cos", "gd")
            parts.append(f"{spec}: {p.text()}, cosine {cos[0]:.4f}")
            verdicts += [close(p, ONE_LAYER_TOL, f"{spec} loss vs GD-1"),
                         cosine_above(cos, COSINE, f"{spec} sensitivity cosine")]
        return found("; ".join(parts), all_of(verdicts))

    @staticmethod
    def layernorm_two(r: Results) -> Finding:
        spec = "layernorm-tf[layers=2]"
        gd = r.paired(spec, "gd[steps=2]", "linear")
        pp_loss = r.mean("gd++[steps=2]", "linear")
        loss = r.mean(spec, "linear")
        v = all_of([above(gd.diff, gd.ci, 0.0, gd.seeds, "loss − GD-2's", unit=num),
                    point(loss > pp_loss, f"loss {loss:.4f} is not above GD++-2's {pp_loss:.4f}")])
        return found(f"vs GD-2: {gd.text()}; loss {loss:.4f} vs GD++-2 {pp_loss:.4f}", v)

    @staticmethod
    def pools(r: Results) -> Finding:
        cos = {P: interval(r, pool_spec(P), "linear", "sens_cos", "gd") for P in POOLS}
        paired = {P: r.paired(pool_spec(P), "gd", "linear") for P in POOLS}
        ours = "; ".join(f"P={P}: {paired[P].rel:+.1%} ± {paired[P].rel_ci:.1%}, cosine {cos[P][0]:.3f}" for P in POOLS)
        small, large = POOLS[0], POOLS[-1]
        return found(ours, all_of([cosine_below(cos[small], COSINE, f"P={small} sensitivity cosine"),
                                   close(paired[large], ONE_LAYER_TOL, f"P={large} loss vs GD-1"),
                                   cosine_above(cos[large], COSINE, f"P={large} sensitivity cosine")]))

    @classmethod
    def ood_depths(cls, r: Results) -> Finding:
        found_ = {K: cls.ood(r, RECURRENT[K], f"gd++[steps={K}]") for K in DEPTHS[1:]}
        v = all_of([Verdict(f.holds, f"K={K}: {f.why}" if f.why else "") for K, f in found_.items()])
        return found("; ".join(f"K={K}: {f.ours}" for K, f in found_.items()), v)

    @classmethod
    def deep_variants(cls, r: Results) -> Finding:
        parts, verdicts = [], []
        for spec in DEEP_VARIANTS:
            p = r.paired(spec, "gd++[steps=2]", "linear")
            parts.append(f"{spec}: {p.rel:+.1%} ± {p.rel_ci:.1%}")
            verdicts.append(with_budget_notes(below(p.rel, p.rel_ci, DEEP_TOL, p.seeds,
                                                    f"{spec}{cls.trained_steps(r, spec)} vs GD++-2"), r, [spec]))
        return found("vs GD++-2: " + "; ".join(parts), all_of(verdicts))

    @staticmethod
    def layernorm_ood(r: Results) -> Finding:
        """Paired against GD-1 on the largest shift of each group where the paper speculates."""
        largest = {}
        for x in r.records:
            if x["suite"] == "linear-ood" and x.get("group") in LARGEST_SHIFTS and x.get("value") is not None:
                g = x["group"]
                if g not in largest or x["value"] > largest[g][1]:
                    largest[g] = (x["task_label"], x["value"])
        if not largest:
            raise LookupError("no linear-ood input range or teacher scale records")
        parts, verdicts = [], []
        for spec in LAYERNORM:
            for group, (task, _) in sorted(largest.items()):
                p = r.paired(spec, "gd", "linear-ood", task)
                parts.append(f"{spec} at {task}: {p.text()}")
                verdicts.append(below(p.rel, p.rel_ci, 0.0, p.seeds, f"{spec} at {task} vs GD-1"))
        return found("; ".join(parts), all_of(verdicts))

    @classmethod
    def phase_transitions(cls, r: Results) -> Finding:
        one, two = r.curves("lsa", "linear"), r.curves("lsa[heads=2]", "linear")
        if not one or not two:
            raise LookupError("no training curves of lsa and lsa[heads=2]")
        a = {s: cls.half_change_step(c, "eval_loss") for s, c in one.items()}
        b = {s: cls.half_change_step(c, "eval_loss") for s, c in two.items()}
        ours = (f"loss halfway down at step: 1 head {', '.join(f'{x:.0f}' for x in a.values())}; 2 heads "
                f"{', '.join(f'{x:.0f}' for x in b.values())}")
        early, late = rank_p(list(b.values()), list(a.values())), rank_p(list(a.values()), list(b.values()))
        ours += f"; one-sided rank test p = {early:.3g} (2 heads earlier), {late:.3g} (1 head earlier)"
        if early <= ALPHA:
            return found(ours, Verdict(True, ""))
        if late <= ALPHA:
            return found(ours, Verdict(False, f"one head drops earlier than two (p = {late:.3g})"))
        smallest = 1 / comb(len(a) + len(b), len(b))
        return found(ours, Verdict(None, f"the ranks do not separate at p <= {ALPHA} (p = {early:.3g}; with "
                                         f"{len(a)} and {len(b)} seeds the smallest possible p is {smallest:.3g})"))

    @classmethod
    def head_cancellation(cls, r: Results) -> Finding:
        res = {a["seed"]: a["result"] for a in r.analyses
               if a["analysis"] == "softmax-heads" and a["result"].get("offdiag_cosine") is not None}
        if not res:
            raise LookupError("no softmax-heads analysis")
        trained = set(cls.trained_seeds(r, "softmax-tf[heads=2]"))
        ours = "; ".join(f"seed {s}: cosine {x['offdiag_cosine']:+.3f}, sum/heads off-diagonal "
                         f"{x['sum_offdiag_ratio']:.2f}" + ("" if s in trained else " (never trained)")
                         for s, x in sorted(res.items()))
        kept = {s: x for s, x in res.items() if s in trained}
        apart = [f"seed {s} ({x['offdiag_cosine']:+.3f})" for s, x in sorted(kept.items())
                 if x["offdiag_cosine"] >= SIGN_REVERSAL]
        why = "no trained seed" if not kept else f"cosine not below {SIGN_REVERSAL}: {', '.join(apart)}"
        return found(ours, point(bool(kept) and not apart, why))


def rank_p(early: list[float], late: list[float]) -> float:
    """P(the `early` sample ranks at least this far before `late`) under exchangeability: the
    exact one-sided Mann-Whitney test, counting ties as half (all C(n+m, n) labellings)."""
    def u(a: list[float], b: list[float]) -> float:  # pairs where a comes first
        return sum((x < y) + 0.5 * (x == y) for x in a for y in b)

    pooled, n = early + late, len(early)
    observed = u(early, late)
    splits = list(combinations(range(len(pooled)), n))
    hits = sum(u([pooled[i] for i in idx], [pooled[j] for j in range(len(pooled)) if j not in idx]) >= observed
               for idx in splits)
    return hits / len(splits)


@iclbench.hookimpl
def register_reproductions(register) -> None:
    register(Paper)
