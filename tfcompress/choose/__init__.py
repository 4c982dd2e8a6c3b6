"""Deciding how much to prune: sensitivity scans (`scan.py`, `report.py`), exact costs of candidate ratios
(`costs.py`) and per-unit ratios under a budget (`budget.py`)."""
