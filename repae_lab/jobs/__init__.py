"""Starting and managing training runs: one run with its in-training evaluation, several side by side in child
processes, a run directory as a job (train, resume or reuse), and what every run of a comparison shares.

    launch.py             train(cfg, out) / train(resume=RUN): the training loop with the evaluation handed in
    runs.py               run_is_complete, run_action, ensure_run: a run directory as done, to resume, or to train
    parallel_training.py  train_in_parallel: RunJobs side by side in child processes, a few at a time
    training_child.py     start_training: one run in a child forked from a server that imported the library once
    shared_networks.py    the VAE, target encoder and evaluator every run of a comparison shares, trained once
    cadence.py            with_cadence: logging, snapshot, evaluation and checkpoint intervals from the run length
    progress.py           Phase: one progress display per phase of a long job
"""
