"""Detection datasets in COCO format: the embedded synthetic one, any COCO-layout one, camera images."""
