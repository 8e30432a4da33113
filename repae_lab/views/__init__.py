"""Plain data and plain plotly figures of run directories, for the widgets, the notebooks and the reports (no
ipywidgets here: the widgets wrap these figures in FigureWidgets).

    figures.py              the shared figure builders: training curves, probe curves, image panels, run colours
    run_summary.py          summary rows, the newest sample grid, a snapshot's images, a plain HTML table
    dashboard_data.py       the training dashboard: the metrics log read incrementally, alarms, time left
    explorer_data.py        the latent explorer: a run's probe results, the scatter, PCA-RGB maps, curves of a step
    explorer_comparison.py  a compare-vaes folder as entries of the latent explorer
    gallery.py              the reconstruction gallery: probe images against reconstructions, per-image error
    playground.py           the sampler playground: one draw of samples and its denoising trajectory
    static_views.py         static plotly views of what the widgets show, for executed notebooks
    html_export.py          figures stacked into one and written as self-contained offline HTML pages
    report.py               the quickstart's offline HTML report
"""
