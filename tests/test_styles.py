"""One look per learner across figures (`iclbench.styles`): the references' fixed looks, their
variants in the family's colour, no shared look in a figure and no shared colour while colours
last, and the same look for a learner whatever else a figure draws, when nothing takes its colour."""

from __future__ import annotations

from iclbench.styles import FAMILIES, PALETTE, candidates, looks

LEARNERS = ["lsa", "lsa[layers=2]", "lsa[layers=2,recurrent=true]", "softmax-tf", "layernorm-tf", "mlp-gd",
            "kernel-ridge", "knn", "averaging", "ridge"]


def test_references_keep_fixed_looks_and_variants_their_family_colour():
    got = looks(["zero", "gd", "gd++", "least-squares", "gd[steps=2]", "gd[steps=3]", "gd++[steps=5,per_step=true]"])
    for name, (color, marker, ls) in FAMILIES.items():
        assert (got[name].color, got[name].marker, got[name].ls) == (color, marker, ls)
    for variant, fam in (("gd[steps=2]", "gd"), ("gd[steps=3]", "gd"), ("gd++[steps=5,per_step=true]", "gd++")):
        assert got[variant].color == FAMILIES[fam][0] and got[variant].key != got[fam].key
    assert len({g.key for g in got.values()}) == len(got)
    others = looks(LEARNERS)
    assert not {o.color for o in others.values()} & {c for c, _, _ in FAMILIES.values()}  # no reference colour


def test_a_figure_never_repeats_a_look_and_spreads_colours_while_they_last():
    got = looks(LEARNERS)
    assert len(LEARNERS) == len(PALETTE)
    assert len({g.color for g in got.values()}) == len(LEARNERS)  # ten learners, ten colours
    many = [f"model-{i}" for i in range(60)]
    got = looks(many)
    assert len({g.key for g in got.values()}) == 60  # more learners than colours: still no shared look


def test_a_learner_looks_the_same_in_every_figure_where_nothing_takes_its_colour():
    own = {name: candidates(name)[0] for name in LEARNERS}
    for name in LEARNERS:
        alone = looks([name, "gd", "zero"])[name]
        assert alone == own[name]  # references never take another learner's colour
    together = looks(LEARNERS)
    assert looks(list(reversed(LEARNERS))) == together  # the order a figure lists them in does not matter
    kept = [n for n in LEARNERS if together[n] == own[n]]
    first = sorted(LEARNERS)[0]
    assert first in kept  # the first placed always keeps its own
