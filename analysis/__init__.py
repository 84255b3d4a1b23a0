"""Analysis of run stores: loading, batch statistics and the policy report.

Importing the package is cheap: :mod:`analysis.load` imports pandas and pyarrow only inside
its functions, and matplotlib is imported only while a report is being built, so the
``decouple`` CLI can import ``analysis.report`` to register its sub-command without delay.

Note: the function ``analysis.load`` shadows the sub-module of the same name as an attribute
of the package; import helpers from the module with ``from analysis.load import ...``.
"""

from analysis.load import load, load_manifest

__all__ = ["load", "load_manifest"]
