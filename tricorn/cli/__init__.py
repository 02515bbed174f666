"""The ``tricorn`` command line (``tricorn.cli.main:main``)."""
