"""``autoscaler backtest``: :mod:`~autoscaler.offline.backtest.replay` fetches and replays a
target's recorded history, :mod:`~autoscaler.offline.backtest.report` writes what it found."""
