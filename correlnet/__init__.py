"""Correl-Net: defect segmentation in old films with correlation networks.

The library depends on torch, timm, segmentation-models-pytorch and numpy only; it never
imports the store (`db`), the web app or SQLAlchemy. Importing it does no work.
"""

__version__ = "0.1.0"

# The probability at which a pixel is a defect: the paper's evaluation threshold, the masks the CLI
# writes, the app's overlay, the mattes. Here (no imports) so that command-line parsers can name it.
DEFECT_THRESHOLD = 0.5
