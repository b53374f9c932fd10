"""Colour masks -> row runs, outlines, RLE and PNG masks; image headers (no IO)."""
