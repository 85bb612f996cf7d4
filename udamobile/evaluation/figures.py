"""The two pictures a reader of this field looks for, as PNG arrays.

- `translation_figure`: like the paper's Fig. 2, rows of
  source -> G_ST(source) -> G_TS(G_ST(source)) and
  target -> G_TS(target) -> G_ST(G_TS(target)).
- `segmentation_figure`: like Fig. 3, rows of target image, ground truth
  (when there is one) and the predictions of each stage (source only,
  adapted) in the Cityscapes palette, with a legend of the classes shown.

Only numpy and OpenCV: images in, uint8 RGB arrays out.
"""
import cv2
import numpy as np

from data_pipelines import classes

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_HEADER = 28
_GAP = 6
_WHITE = 255


def _text(canvas, text, origin, scale=0.55, colour=(0, 0, 0)):
    cv2.putText(canvas, text, origin, _FONT, scale, colour, 1, cv2.LINE_AA)


def _upscale(image, scale):
    if scale == 1:
        return image
    height, width = image.shape[:2]
    return cv2.resize(image, (width * scale, height * scale), interpolation=cv2.INTER_NEAREST)


def image_grid(rows, titles, *, scale=2):
    """Tiles rows of equally sized uint8 RGB images under column titles.

    rows: list of lists of [H, W, 3] uint8; titles: one string per column.
    """
    tiles = [[_upscale(image, scale) for image in row] for row in rows]
    height, width = tiles[0][0].shape[:2]
    columns = len(titles)
    canvas = np.full((_HEADER + len(rows) * (height + _GAP), columns * (width + _GAP) - _GAP, 3),
                     _WHITE, np.uint8)
    for c, title in enumerate(titles):
        _text(canvas, title, (c * (width + _GAP) + 4, _HEADER - 9))
    for r, row in enumerate(tiles):
        top = _HEADER + r * (height + _GAP)
        for c, tile in enumerate(row):
            left = c * (width + _GAP)
            canvas[top:top + height, left:left + width] = tile
    return canvas


def legend(class_ids, width, *, swatch=16, column_width=150):
    """A white strip naming each class in `class_ids` next to its colour."""
    per_row = max(1, width // column_width)
    rows = -(-len(class_ids) // per_row)
    canvas = np.full((rows * (swatch + 8) + 8, width, 3), _WHITE, np.uint8)
    for i, class_id in enumerate(class_ids):
        top = 8 + (i // per_row) * (swatch + 8)
        left = 8 + (i % per_row) * column_width
        colour = tuple(int(v) for v in classes.PALETTE[class_id])
        cv2.rectangle(canvas, (left, top), (left + swatch, top + swatch), colour, -1)
        _text(canvas, classes.CLASS_NAMES[class_id], (left + swatch + 6, top + swatch - 3), 0.45)
    return canvas


def translation_figure(source, source_translated, source_reconstructed,
                       target, target_translated, target_reconstructed, *, scale=2):
    """Fig. 2: each argument is a list of uint8 RGB images (one per row)."""
    rows = [list(images) for images in zip(source, source_translated, source_reconstructed)]
    rows += [list(images) for images in zip(target, target_translated, target_reconstructed)]
    return image_grid(rows, ["input", "translated", "translated back"], scale=scale)


def segmentation_figure(images, labels, predictions, *, scale=2):
    """Fig. 3: uint8 RGB images, [H, W] train-id labels (None: no ground truth
    column) and {column title: [H, W] train-id predictions, one per image}; one
    row per image."""
    columns = ([] if labels is None else [labels]) + list(predictions.values())
    rows = [[image] + [classes.colorize(column[i]) for column in columns]
            for i, image in enumerate(images)]
    titles = ["target image", *([] if labels is None else ["ground truth"]), *predictions]
    grid = image_grid(rows, titles, scale=scale)
    shown = np.unique(np.concatenate([np.ravel(a) for a in sum(columns, [])]))
    shown = [int(c) for c in shown if c < classes.NUM_CLASSES]
    return np.concatenate([grid, legend(shown, grid.shape[1])], axis=0)


def write_png(path, image):
    """Writes an RGB uint8 array as PNG."""
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
