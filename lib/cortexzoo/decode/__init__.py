"""Out-of-domain decoding (paper 001, SCIENCE.md section 6): a linear readout trained on one
image domain and tested on the others, from recorded sites and from model units, with the
models' unit counts matched to the recorded population's in-domain accuracy.

``run_decode(DecodeConfig(...))`` is ``cortexzoo decode``; the math (2AFC, the batched
leave-one-out ridge classifier, matched counts, the log law) is in
:mod:`cortexzoo.mapping.decode`; image domains are made by :mod:`cortexzoo.data.domains`.
"""
from .config import DecodeConfig, SplitConfig
from .engine import decode_population
from .populations import Population, PopulationError
from .run import DecodeResult, run_decode, unit_grid
from .splits import DecodeDataError, Splits, draw_splits, resolve_domains

__all__ = ["DecodeConfig", "SplitConfig", "DecodeResult", "run_decode", "unit_grid",
           "decode_population", "Population", "PopulationError", "DecodeDataError", "Splits",
           "draw_splits", "resolve_domains"]
