"""``autoscaler backtest``: :mod:`~autoscaler.offline.backtest.recorded` fetches a target's
recorded history and computes what happened, :mod:`~autoscaler.offline.backtest.replay`
replays it (through :mod:`autoscaler.offline.experiment`), :mod:`~autoscaler.offline.backtest.meta`
and :mod:`~autoscaler.offline.backtest.report` write what it found, and
:mod:`~autoscaler.offline.backtest.command` is its command line."""
