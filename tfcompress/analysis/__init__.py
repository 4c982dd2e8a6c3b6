"""Model analysis: compute cost (`flops`, `macs`, `params`)."""
from tfcompress.analysis.cost import flops, layer_macs, macs, params  # noqa: F401
