"""INT8 quantisation (issue 11, notes/int8.md): the maths (``quant_math``), the per-layer
schedule (``schedule``). Kept import-light: the ops import ``quant_math``."""
