"""The label-coupling ablation: zeroing what the construction has at zero leaves it unchanged,
the trained model is rebuilt exactly from its products, and claim 7 reads the gap each closes."""

from __future__ import annotations

import torch

from helpers import sample64
from iclbench_plugins.analyses.lsa import from_products, loss_of, products, without_label_coupling
from iclbench_plugins.reproductions.paper import Paper

from test_paper import paired, results


def test_zeroing_the_label_coupling_of_the_gdpp_construction_changes_nothing(catalog, linear):
    model = catalog.learners["lsa-gd++"]({"steps": 2, "eta": [3.0, 9.0], "gamma": [0.4, 1.2]}).constructed(10, 1).double()
    ep = sample64(linear, 300)
    layers = products(model)
    for which in ("kq", "pv", "both"):
        zeroed = from_products(10, 1, [without_label_coupling(kq, pv, 10, which) for kq, pv in layers])
        assert loss_of(zeroed, ep) == loss_of(model, ep)
    # a coupling the construction lacks does change it, and only the zeroing of its own matrix removes it
    kq, pv = layers[0]
    kq = kq.clone()
    kq[10, :10] = 0.5  # the label row of W_KQ
    coupled = [(kq, pv), layers[1]]
    assert loss_of(from_products(10, 1, coupled), ep) > 1.01 * loss_of(model, ep)
    fixed = from_products(10, 1, [without_label_coupling(a, b, 10, "kq") for a, b in coupled])
    assert abs(loss_of(fixed, ep) - loss_of(model, ep)) < 1e-12
    only_pv = from_products(10, 1, [without_label_coupling(a, b, 10, "pv") for a, b in coupled])
    assert loss_of(only_pv, ep) > 1.01 * loss_of(model, ep)


def test_claim_7_says_which_zeroing_closes_the_gap(tmp_path):
    spec = "lsa[layers=2,recurrent=true]"
    recs = [{**paired(spec, "gd++[steps=2]", d, suite="linear-ood", task=t), "group": g}
            for t, g, d in [("linear", None, 0.001), ("teacher-scale=5", "teacher scale", 0.18)]]
    ablation = {"learner": spec, "construction": "gd++", "tasks": {
        "teacher-scale=5": {"construction": 2.0, "trained": 3.0, "kq": 2.1, "pv": 2.9, "both": 2.0}}}
    found = Paper.ood(results(tmp_path, recs, [("label-coupling", ablation)]), spec, "gd++[steps=2]")
    assert found.holds is False
    assert found.why.endswith("label-coupling ablation (1 seed(s)), share of the gap to the construction closed by "
                              "teacher-scale=5: zeroing W_KQ's label row and column 90%, W_PV's x <-> y blocks 10%, "
                              "both 100% of the gap")
