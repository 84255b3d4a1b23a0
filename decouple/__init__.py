"""Command-line entry point of the decoupling model (``decouple``)."""
