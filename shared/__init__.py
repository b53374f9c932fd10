"""gtcoco: GT Studio (Playment) annotation exports to COCO datasets."""

__version__ = "0.1.0"
# COCO's `info.year` (an int): the release's, since outputs carry no dates (determinism).
RELEASE_YEAR = 2026
