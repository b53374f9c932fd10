"""Parsed jobs -> COCO: images, instances, keypoints and the extras COCO cannot hold (no IO)."""
