"""The experiment side: which runs to make (scenarios x seeds x samples) and where results go.

Kept apart from :mod:`model`, as EMA Workbench keeps experiments apart from models: the model
knows nothing of batches, and this package only calls :func:`model.run.simulate`.
"""
