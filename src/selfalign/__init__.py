"""selfalign: align a language model with as little human labelling as possible."""

__version__ = "0.1.0"
