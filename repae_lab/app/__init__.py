"""The application layer, on top of the library: the `repae-lab` command (cli.py), starting runs with their
evaluation (launch.py), what the notebooks call (workbench.py) and the plotly figures that notebooks and widgets
share (figures.py). Nothing below this layer imports it."""
