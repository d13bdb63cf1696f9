"""The command line: ``autoscaler run|simulate|backtest|validate-policy|observe|release``.

:mod:`autoscaler.cli.main` parses the command and turns errors into one line and an exit
code; :mod:`autoscaler.cli.options` holds the checked option types every command shares.
``observe`` and ``release`` are one-shot commands; ``run`` starts :mod:`autoscaler.runtime`,
``simulate`` and ``backtest`` are in :mod:`autoscaler.offline`.
"""
