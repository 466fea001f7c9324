"""Figures from the Jupyter client: percentiles of cell round trips."""

from jupyterfab.jupyterclient import percentile


def test_percentiles_by_nearest_rank():
    samples = [float(x) for x in range(1, 201)]     # 1..200, shuffled order must not matter
    samples.reverse()
    assert percentile(samples, 50) == 100.0
    assert percentile(samples, 99) == 198.0
    assert percentile(samples, 100) == 200.0 and percentile([7.0], 50) == 7.0
