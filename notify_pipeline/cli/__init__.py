"""The `notify-pipeline` command line: `main.py` holds the top group and registers one module per
command group (`queue`, `send`, `admin`, `diagnostics`, ...); what they share is in `common.py`, and
no command module imports another. `main` is not re-exported here: `notify_pipeline.cli.main`
stays the module's name (the console script and `python -m notify_pipeline.cli.main` load it)."""
