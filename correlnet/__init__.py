"""Correl-Net: defect segmentation in old films with correlation networks.

The library depends on torch, timm, segmentation-models-pytorch and numpy only; it never
imports the store (`db`), the web app or SQLAlchemy. Importing it does no work.
"""

__version__ = "0.1.0"
