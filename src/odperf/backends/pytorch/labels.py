"""torchvision's COCO label space, which a detector built without weights is given (and the catalog lists)."""

COCO_CLASSES = 91  # category ids 1..90 with gaps, 0 = background
