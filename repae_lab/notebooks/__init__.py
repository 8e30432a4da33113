"""What runs inside the notebooks or drives them: checking a notebook's parameters, what an executed notebook
records, training from a kernel, and executing notebooks with papermill (one, or a grid of them).

    params.py           the parameters cell: check() and its rules in the kernel, what run-notebook reads before
    output.py           offline plotly figures and the records an executed notebook leaves (headline, runs)
    kernel_training.py  train_run: training from a notebook, in the kernel or under torchrun, with progress
    runner.py           run_notebook: papermill, an offline HTML export and summary.json
    sweeps.py           run_sweep: a notebook once per combination of a parameter grid, with an index
"""
