"""Architecture changes: a layer rewritten as two cheaper ones, through `tfcompress.graph`.

- `ranks.py`: which Dense / Conv2D layers to factor and at what rank (singular-value energy, a MAC ratio,
  a MAC target, or ranks given by name);
- `factorize.py`: `tfc.low_rank`, the truncated-SVD factorisation;
- `separate.py`: `tfc.separable`, Conv2D k×k as DepthwiseConv2D k×k + Conv2D 1×1.

No module here shares a public function's name (see `tfcompress/__init__.py`).
"""
