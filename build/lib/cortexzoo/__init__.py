"""cortexzoo: compare deep networks with neural recordings at cluster scale."""

__version__ = "0.1.0"
