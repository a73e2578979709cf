"""The web viewer: watch the fleet classify, image by image (python -m viewer)."""
