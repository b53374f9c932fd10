"""gtcoco: GT Studio (Playment) annotation exports to COCO datasets."""

__version__ = "0.1.0"
