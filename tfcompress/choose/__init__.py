"""Deciding how much to prune: sensitivity scans (`scan.py`, `report.py`), exact costs of candidate ratios
(`costs.py`), per-unit ratios under a budget (`budget.py`) and NetAdapt's loop on measured latency
(`netadapt.py`)."""
