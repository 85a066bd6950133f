"""iclbench's built-in plugins, laid out by kind. Each module below is registered through the
`iclbench` entry-point group (pyproject.toml) exactly as a third-party package registers its
own; the core special-cases none of them.

- `learners/`: closed-form and classical in-context learners (the paper's comparators);
- `transformers/`: the trained models, their building blocks in `transformers/nn/`;
- `tasks/`: task families and their generators;
- `analyses/`: studies of fitted learners beyond the leaderboard loss;
- `reproductions/<name>/`: one paper each: claims (`__init__.py`), `figures.py`, `spec.toml`, README;
- `suites/`: the suite definitions, TOML data;
- `backends/`: the `ray` executor and the trackers (the default `local` executor is the core's).

`INDEX` says what each module registers (tested against the entry points and the catalog).
"""

INDEX: dict[str, dict[str, list[str]]] = {
    # module (under iclbench_plugins.): {registry: [registered names]}
    "learners.baselines": {"learners": ["averaging", "knn", "zero"]},
    "learners.bayes_optimal": {"learners": ["bayes-ridge", "dmmse"]},
    "learners.function_class_baselines": {"learners": ["lasso", "relu-nn"]},
    "learners.gradient_descent": {"learners": ["gd", "gd++"]},
    "learners.kalman": {"learners": ["kalman"]},
    "learners.kernels": {"learners": ["kernel-ridge", "kernel-smoother"]},
    "learners.least_squares": {"learners": ["least-squares", "ridge"]},
    "learners.online_references": {"learners": ["online-gd", "online-gdpp", "online-ridge"]},
    "learners.trees": {"learners": ["boosting", "tree"]},
    "transformers.causal": {"learners": ["causal-tf"]},
    "transformers.copying": {"learners": ["copy-gd", "copy-tf"]},
    "transformers.features": {"learners": ["mlp-gd", "mlp-lsa"]},
    "transformers.lsa": {"learners": ["layernorm-tf", "lsa", "lsa-gd", "lsa-gd++", "softmax-tf"]},
    "transformers.sequence": {"learners": ["seq-tf"]},
    "tasks.alternating": {"tasks": ["alternating"]},
    "tasks.fewshot": {"tasks": ["fewshot"]},
    "tasks.function_classes": {"tasks": ["garg-linear", "garg-relu", "garg-tree"]},
    "tasks.lds": {"tasks": ["lds"]},
    "tasks.linear_regression": {"tasks": ["linear-regression"]},
    "tasks.sine": {"tasks": ["sine"]},
    "analyses.compressed": {"analyses": ["compressed"]},
    "analyses.conditioning": {"analyses": ["gd++-conditioning"]},
    "analyses.fewshot_prompt": {"analyses": ["fewshot"]},
    "analyses.heads": {"analyses": ["softmax-heads"]},
    "analyses.lsa": {"analyses": ["interpolation", "label-coupling", "repeated", "weights"]},
    "analyses.ood_interpolation": {"analyses": ["interpolation-ood"]},
    "analyses.probes": {"analyses": ["probes"]},
    "analyses.sine_functions": {"analyses": ["sine-functions"]},
    "reproductions.garg": {"reproductions": ["garg"]},
    "reproductions.mesa": {"reproductions": ["mesa"]},
    "reproductions.paper": {"reproductions": ["paper"]},
    "suites": {"suites": ["alternating", "fewshot", "garg-classification", "garg-linear", "garg-pool", "garg-relu",
                          "garg-sparse", "garg-tree", "lds", "lds-ood", "lds-partial", "linear", "linear-ood", "sine"]},
    "backends.executors": {"executors": ["ray"]},  # `local`, the default, is the core's (iclbench.local_executor)
    "backends.trackers": {"trackers": ["tensorboard", "wandb"]},
}
