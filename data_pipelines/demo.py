"""Built-in demo domains: procedurally generated street scenes, in memory.

Every domain draws scenes from ONE layout generator: a straight street seen
from a car (pinhole camera 1.6 m above the road, square pixels) with a road,
sidewalks, building facades or a park with a hedge on each side, a distant
skyline, and cars, persons, poles with traffic signs and trees placed on the
ground and painted far to near. Labels use 10 of the 19 train ids (road,
sidewalk, building, pole, traffic sign, vegetation, terrain, sky, person, car).
The source and `demo_target` draw from the same `STREET_LAYOUT`, so they
differ in appearance only; `demo_city` differs in layout and texture too:

- `demo_source` ("synthetic"): flat class colours with a mild colour jitter
  per object and sharp edges.
- `demo_target` ("real-looking"): the same flat colours, then texture
  (per-class grain and smooth shading), a global colour change
  (`target_colour_transform`: a channel rotation that moves every class's
  colour near another class's source colour - sky turns pink, vegetation
  blue, cars red - with gamma and contrast), per-image exposure, vignetting,
  slight blur and sensor noise. A model trained on the source confuses the
  classes on the target; a translator can learn the change.
- `demo_city` ("real-looking, another city"): `demo_target`'s whole
  appearance change, and besides it a shift of texture and layout that a
  colour change cannot undo, as Cityscapes differs from GTA5 in more than
  colour. Texture: facades carry windows, the road lane markings, cars a rear
  window, all painted in perspective and labelled as the surface they are on.
  Layout (`CITY_LAYOUT`): a longer lens and a camera pitched down, narrower
  streets between taller buildings, almost no parks, more cars and persons,
  and the bonnet of the ego car across the bottom of every image, labelled
  255 (ignore) as Cityscapes labels its ego vehicle.

data_pipelines/demo_domains.py names every demo domain (these and the shift
suite of data_pipelines/demo_shifts.py) and seeds each scene. Generating a
128 x 256 image and its label took 3.4 ms (source), 6.9 ms (demo_target) and
12.9 ms (demo_city) on one core of the 2-core Xeon (medians of 7 interleaved
rounds of benchmarks/data_pipeline.py, minimums 3.3, 6.5 and 12.4 ms, nothing
else running): 1.5 to 5.7 times the rate the
demo's source-only step consumes images.
"""
import dataclasses
import functools

import cv2
import numpy as np

from data_pipelines import classes

DEMO_SIZE = (128, 256)  # (height, width)

ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR = (
    classes.CLASS_NAMES.index(name) for name in (
        "road", "sidewalk", "building", "pole", "traffic sign", "vegetation", "terrain",
        "sky", "person", "car"))
SCENE_CLASSES = (ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR)
EGO_VEHICLE = classes.IGNORE_LABEL  # the bonnet of demo_city's ego car: not scored

# Flat colours of every domain before the targets' appearance change (RGB).
CLASS_COLOURS = {
    ROAD: (90, 88, 96), SIDEWALK: (180, 160, 150), BUILDING: (150, 100, 75),
    POLE: (215, 215, 220), SIGN: (235, 200, 40), VEGETATION: (60, 125, 45),
    TERRAIN: (160, 195, 95), SKY: (120, 175, 235), PERSON: (205, 45, 65), CAR: (40, 55, 160),
    EGO_VEHICLE: (35, 35, 40),
}
# demo_city's texture, drawn over the class colour of the surface it is on.
NO_DETAIL, GLASS, PAINT = 0, 1, 2  # values of a scene's detail map
DETAIL_COLOURS = {GLASS: (55, 65, 85), PAINT: (230, 230, 220)}
OBJECT_COLOUR_JITTER = 10.0  # std of the per-object colour offset, per channel

# The target's global colour change: out_c = sum_k MIX[c, k] * in_k (rows sum
# to 1 so greys stay grey), then gamma on [0, 1], contrast around 0.5 and a tint.
TARGET_CHANNEL_MIX = np.array([[0.10, 0.10, 0.80],
                               [0.80, 0.10, 0.10],
                               [0.10, 0.80, 0.10]], dtype=np.float32)
TARGET_GAMMA = 0.8
TARGET_CONTRAST = 0.85
TARGET_TINT = np.array([0.04, 0.0, -0.03], dtype=np.float32)
# Relative grain amplitude per class: leaves and grass are rough, sky smooth.
TARGET_GRAIN = {ROAD: 0.08, SIDEWALK: 0.08, BUILDING: 0.12, POLE: 0.03, SIGN: 0.03,
                VEGETATION: 0.25, TERRAIN: 0.15, SKY: 0.03, PERSON: 0.06, CAR: 0.06,
                EGO_VEHICLE: 0.03}
TARGET_SHADING = 0.06      # amplitude of the smooth lighting field
TARGET_EXPOSURE = (0.9, 1.05)
TARGET_VIGNETTING = 0.25   # darkening at the corners
TARGET_BLUR_SIGMA = 0.7    # pixels
TARGET_NOISE = 3.0         # std of the sensor noise, in 0..255 units

CAMERA_HEIGHT = 1.6        # metres


@dataclasses.dataclass(frozen=True)
class StreetLayout:
    """What a domain's streets are drawn from: (low, high) ranges are uniform,
    counts are integers in [low, high)."""
    focal_per_width: float   # focal length in pixels / image width
    horizon: tuple           # row of the horizon / image height
    road_half: tuple         # metres from the centre line to the kerb
    sidewalk: tuple          # metres
    park_probability: float  # a side with a park (hedge, trees) instead of buildings
    building_heights: tuple  # metres
    cars: tuple
    persons: tuple
    poles: tuple
    trees: tuple
    details: bool = False    # windows, lane markings and cars' rear windows
    bonnet: float = 0.0      # image height the ego car's bonnet covers at the centre
    camera_height: float = CAMERA_HEIGHT  # metres above the road


# demo_source and demo_target: a ~58 degree field of view, wide streets.
STREET_LAYOUT = StreetLayout(
    focal_per_width=0.9, horizon=(0.40, 0.52), road_half=(3.5, 6.0), sidewalk=(2.0, 4.0),
    park_probability=0.3, building_heights=(6.0, 22.0), cars=(1, 5), persons=(0, 7),
    poles=(1, 4), trees=(0, 6))
# demo_city: a ~47 degree lens pitched down, narrow streets, tall buildings, crowds.
CITY_LAYOUT = StreetLayout(
    focal_per_width=1.15, horizon=(0.30, 0.42), road_half=(2.8, 4.5), sidewalk=(1.5, 3.0),
    park_probability=0.1, building_heights=(10.0, 30.0), cars=(2, 8), persons=(2, 9),
    poles=(2, 5), trees=(0, 4), details=True, bonnet=0.12)
# Facades: a window in the middle of each bay and storey (metres).
WINDOW_BAY, WINDOW_STOREY, GROUND_FLOOR = 3.0, 3.2, 3.5
# Road paint: a dashed centre line and a solid line inside each kerb (metres).
LINE_HALF_WIDTH, DASH_PERIOD, DASH_LENGTH, EDGE_LINE_INSET = 0.08, 9.0, 3.0, 0.3


def _table(values_by_class, default, shape=()):
    table = np.full((256,) + shape, default, dtype=np.float32)
    for class_id, value in values_by_class.items():
        table[class_id] = value
    return table


_COLOUR_TABLE = _table(CLASS_COLOURS, 0.0, (3,))
_DETAIL_COLOUR_TABLE = _table(DETAIL_COLOURS, 0.0, (3,))
_GRAIN_TABLE = _table(TARGET_GRAIN, 0.0)


# Scene geometry -----------------------------------------------------------

class _Camera:
    """Projection of road coordinates (lateral X, distance D, height Z; metres)."""

    def __init__(self, height, width, horizon, vanishing_x, focal_per_width, camera_height):
        self.height, self.width = height, width
        self.horizon, self.vanishing_x = horizon, vanishing_x
        self.focal = focal_per_width * width
        self.camera_height = camera_height

    def pixels_per_metre(self, distance):
        return self.focal / distance

    def row(self, distance, z=0.0):
        return self.horizon + (self.camera_height - z) * self.focal / distance

    def column(self, distance, lateral):
        return self.vanishing_x + lateral * self.focal / distance

    def ground_distance(self, row):
        """Distance (metres) of the road seen at image `row` (below the horizon)."""
        return self.camera_height * self.focal / (row - self.horizon)

    def height_seen(self, row, distance):
        """Height (metres) of the point at image `row` on a surface `distance` away."""
        return self.camera_height - (row - self.horizon) * distance / self.focal


class Canvas:
    """An object-id map painted back to front, the class of each object, and a
    detail map (NO_DETAIL, GLASS, PAINT) of the texture drawn on the objects.

    Object 0 is the sky that fills the canvas at first.
    """

    def __init__(self, height, width):
        self.objects = np.zeros((height, width), dtype=np.int32)
        self.details = np.zeros((height, width), dtype=np.uint8)
        self.object_classes = [SKY]
        self.object_distances = [np.inf]  # metres to where a thing stands; inf: not a thing

    def new_object(self, class_id, distance=np.inf):
        self.object_classes.append(class_id)
        self.object_distances.append(distance)
        return len(self.object_classes) - 1

    def fill(self, obj, mask, rows=slice(None), cols=slice(None), details=None):
        """Paints `obj` where `mask` (shaped like the window rows x cols) is True,
        with `details` (shaped like `mask`) on it, or none: it hides what was there."""
        self.objects[rows, cols][mask] = obj
        self.details[rows, cols][mask] = NO_DETAIL if details is None else details[mask]

    def _window(self, top, bottom, left, right):
        height, width = self.objects.shape
        top, bottom, left, right = (int(np.floor(v + 0.5)) for v in (top, bottom, left, right))
        top, left, bottom, right = max(top, 0), max(left, 0), min(bottom, height), min(right, width)
        return slice(top, max(bottom, top)), slice(left, max(right, left))

    def box(self, obj, top, bottom, left, right):
        """Paints the axis-aligned box [top, bottom) x [left, right), at least 1 pixel wide."""
        centre = (left + right) / 2
        left, right = min(left, centre - 0.5), max(right, centre + 0.5)
        rows, cols = self._window(top, bottom, left, right)
        self.objects[rows, cols] = obj
        self.details[rows, cols] = NO_DETAIL

    def mark(self, detail, top, bottom, left, right):
        """Draws `detail` over the box [top, bottom) x [left, right)."""
        self.details[self._window(top, bottom, left, right)] = detail

    def ellipse(self, obj, centre_row, centre_col, radius_rows, radius_cols):
        rows, cols = self._window(centre_row - radius_rows, centre_row + radius_rows + 1,
                                  centre_col - radius_cols, centre_col + radius_cols + 1)
        y = np.arange(rows.start, rows.stop)[:, None] + 0.5 - centre_row
        x = np.arange(cols.start, cols.stop)[None, :] + 0.5 - centre_col
        radius_rows, radius_cols = max(radius_rows, 0.5), max(radius_cols, 0.5)
        self.fill(obj, (y / radius_rows) ** 2 + (x / radius_cols) ** 2 <= 1.0, rows, cols)


def _paint_skyline(canvas, camera, rng):
    """Distant buildings and tree lines standing on the horizon."""
    left = 0.0
    while left < camera.width:
        right = left + camera.width * rng.uniform(0.04, 0.18)
        kind = rng.choice(3, p=(0.65, 0.2, 0.15))  # building, trees, gap
        if kind < 2:
            tallest = 0.25 if kind == 0 else 0.08
            top = camera.horizon - camera.height * rng.uniform(0.02, tallest)
            obj = canvas.new_object(BUILDING if kind == 0 else VEGETATION)
            canvas.box(obj, top, camera.horizon + 1, left, right)
        left = right


def _lane_markings(camera, lateral, rows, road_half):
    """The detail map of the road at `lateral` metres (seen on `rows`): PAINT on
    the dashed centre line and the lines inside the kerbs."""
    distance = camera.ground_distance(rows)
    centre = (np.abs(lateral) < LINE_HALF_WIDTH) & (np.mod(distance, DASH_PERIOD) < DASH_LENGTH)
    edges = np.abs(np.abs(lateral) - (road_half - EDGE_LINE_INSET)) < LINE_HALF_WIDTH
    return np.where(centre | edges, PAINT, NO_DETAIL).astype(np.uint8)


def _paint_ground(canvas, camera, street):
    """Road, sidewalks and (beyond them) terrain below the horizon."""
    first_row = int(np.ceil(camera.horizon))
    rows = slice(first_row, camera.height)
    y = np.arange(first_row, camera.height)[:, None] + 0.5
    x = np.arange(camera.width)[None, :] + 0.5
    # A ground pixel's lateral position: its column offset over pixels per metre.
    lateral = (x - camera.vanishing_x) * camera.camera_height / (y - camera.horizon)
    road_half, outer = street["road_half"], street["road_half"] + street["sidewalk"]
    for side in (-1, 1):
        on_side = side * lateral > 0
        canvas.fill(canvas.new_object(TERRAIN), on_side & (abs(lateral) >= outer), rows)
        canvas.fill(canvas.new_object(SIDEWALK),
                    on_side & (abs(lateral) >= road_half) & (abs(lateral) < outer), rows)
    markings = (_lane_markings(camera, lateral, y, road_half) if street["layout"].details
                else None)
    canvas.fill(canvas.new_object(ROAD), abs(lateral) < road_half, rows, details=markings)


def _windows(camera, distance):
    """The detail map of a facade whose column x is `distance[x]` metres away:
    GLASS in the middle of each bay and storey above the ground floor."""
    rows = np.arange(camera.height)[:, None] + 0.5
    height = camera.height_seen(rows, distance)
    with np.errstate(invalid="ignore"):  # columns that never see the wall: inf
        bay = np.mod(distance, WINDOW_BAY) / WINDOW_BAY
        storey = np.mod(height, WINDOW_STOREY) / WINDOW_STOREY
        glass = ((bay > 0.3) & (bay < 0.7) & (storey > 0.3) & (storey < 0.75)
                 & (height > GROUND_FLOOR))
    return np.where(glass, GLASS, NO_DETAIL).astype(np.uint8)


def _paint_side_wall(canvas, camera, rng, *, side, lateral, class_id, heights, lengths,
                     windows=False):
    """A vertical wall along the street at `lateral` metres on `side` (-1 left,
    +1 right), cut into consecutive objects (`lengths` metres long, `heights`
    metres tall, drawn uniformly from the given ranges) up to 150 m away, with
    `windows` on it or none."""
    x = np.arange(camera.width) + 0.5
    offset = side * (x - camera.vanishing_x)
    boundaries = np.cumsum(rng.uniform(*lengths, size=64))
    boundaries = boundaries[:np.searchsorted(boundaries, 150.0) + 1]
    segment_heights = rng.uniform(*heights, size=boundaries.size)
    # Column x sees the wall at the distance where `lateral` projects to x;
    # columns on the other side of the vanishing point never see it.
    with np.errstate(divide="ignore"):
        distance = np.where(offset > 0, camera.focal * lateral / offset, np.inf)
    segment = np.searchsorted(boundaries, distance)
    on_wall = segment < boundaries.size
    height_m = np.where(on_wall, segment_heights[np.minimum(segment, boundaries.size - 1)], 0.0)
    y = np.arange(camera.height)[:, None] + 0.5
    inside = (y >= camera.row(distance, z=height_m)) & (y < camera.row(distance)) & on_wall
    details = _windows(camera, distance) if windows else None
    for index in np.unique(segment[on_wall]):
        canvas.fill(canvas.new_object(class_id), inside & (segment == index), details=details)


def _paint_car(canvas, camera, rng, distance, lateral, rear_window=False):
    """Seen from behind: a body and a narrower cabin, with a `rear_window` or none."""
    obj = canvas.new_object(CAR, distance)
    centre = camera.column(distance, lateral)
    metre = camera.pixels_per_metre(distance)
    half_width, roof = rng.uniform(0.8, 1.0), rng.uniform(1.4, 1.9)
    canvas.box(obj, camera.row(distance, 0.95), camera.row(distance, 0.0),
               centre - half_width * metre, centre + half_width * metre)
    canvas.box(obj, camera.row(distance, roof), camera.row(distance, 0.95),
               centre - 0.75 * half_width * metre, centre + 0.75 * half_width * metre)
    if rear_window:
        canvas.mark(GLASS, camera.row(distance, roof - 0.1), camera.row(distance, 1.1),
                    centre - 0.6 * half_width * metre, centre + 0.6 * half_width * metre)


def _paint_person(canvas, camera, rng, distance, lateral):
    obj = canvas.new_object(PERSON, distance)
    centre = camera.column(distance, lateral)
    metre = camera.pixels_per_metre(distance)
    tall = rng.uniform(1.55, 1.9)
    canvas.box(obj, camera.row(distance, tall - 0.25), camera.row(distance, 0.0),
               centre - 0.22 * metre, centre + 0.22 * metre)
    canvas.ellipse(obj, camera.row(distance, tall - 0.13), centre, 0.13 * metre, 0.11 * metre)


def _paint_pole(canvas, camera, rng, distance, lateral):
    obj = canvas.new_object(POLE, distance)
    centre = camera.column(distance, lateral)
    metre = camera.pixels_per_metre(distance)
    tall = rng.uniform(3.0, 6.0)
    canvas.box(obj, camera.row(distance, tall), camera.row(distance, 0.0),
               centre - 0.07 * metre, centre + 0.07 * metre)
    if rng.random() < 0.7:
        sign = canvas.new_object(SIGN, distance)
        sign_row = camera.row(distance, tall - 0.4)
        if rng.random() < 0.5:
            canvas.box(sign, sign_row - 0.35 * metre, sign_row + 0.35 * metre,
                       centre - 0.35 * metre, centre + 0.35 * metre)
        else:
            canvas.ellipse(sign, sign_row, centre, 0.35 * metre, 0.35 * metre)


def _paint_tree(canvas, camera, rng, distance, lateral):
    obj = canvas.new_object(VEGETATION, distance)
    centre = camera.column(distance, lateral)
    metre = camera.pixels_per_metre(distance)
    trunk = rng.uniform(2.0, 3.5)
    radius = rng.uniform(1.2, 2.5)
    canvas.box(obj, camera.row(distance, trunk), camera.row(distance, 0.0),
               centre - 0.15 * metre, centre + 0.15 * metre)
    canvas.ellipse(obj, camera.row(distance, trunk + 0.8 * radius), centre,
                   1.2 * radius * metre, radius * metre)


def _distances(rng, count):
    """Log-uniform distances (metres) between 4.5 and 70: as many near as far objects."""
    return np.exp(rng.uniform(np.log(4.5), np.log(70.0), size=count))


def _paint_bonnet(canvas, camera, bonnet):
    """The ego car's bonnet: `bonnet` of the image height at the centre, curving
    down towards the sides."""
    x = (np.arange(camera.width) + 0.5) / camera.width - 0.5
    top = camera.height * (1.0 - bonnet * (1.0 - 3.2 * x ** 2))
    y = np.arange(camera.height)[:, None] + 0.5
    canvas.fill(canvas.new_object(EGO_VEHICLE), y >= top[None, :])


def _place_objects(rng, street):
    """[(distance, lateral, painter)] of the scene's cars, persons, poles and trees."""
    road_half, sidewalk, layout = street["road_half"], street["sidewalk"], street["layout"]
    sides = rng.choice((-1, 1), size=32)
    paint_car = functools.partial(_paint_car, rear_window=layout.details)
    placed = []
    for distance, side in zip(_distances(rng, rng.integers(*layout.cars)), sides[:8]):
        lane = rng.choice((0.5, road_half - 1.1))  # driving, or parked at the kerb
        placed.append((distance, side * lane + rng.uniform(-0.3, 0.3), paint_car))
    for distance, side in zip(_distances(rng, rng.integers(*layout.persons)), sides[8:16]):
        placed.append((distance, side * (road_half + rng.uniform(0.4, sidewalk - 0.3)),
                       _paint_person))
    for distance, side in zip(_distances(rng, rng.integers(*layout.poles)), sides[16:24]):
        placed.append((distance, side * (road_half + 0.3), _paint_pole))
    for distance, side in zip(_distances(rng, rng.integers(*layout.trees)), sides[24:32]):
        beyond = rng.uniform(0.5, 3.0) if street["park"][side] else -0.7
        placed.append((distance, side * (road_half + sidewalk + beyond), _paint_tree))
    return placed


def scene_camera(rng, height, width, layout=STREET_LAYOUT):
    """The camera of a random scene of `layout`: its horizon and vanishing point."""
    return _Camera(height, width, horizon=height * rng.uniform(*layout.horizon),
                   vanishing_x=width * rng.uniform(0.40, 0.60),
                   focal_per_width=layout.focal_per_width, camera_height=layout.camera_height)


def scene_layout(rng, height, width, layout=STREET_LAYOUT):
    """A random street scene drawn from `layout`.

    Returns:
      (objects int32 [height, width] object ids, object_classes uint8
      [num_objects] train id of each object (EGO_VEHICLE: ignore), details
      uint8 [height, width] NO_DETAIL, GLASS or PAINT); the label is
      object_classes[objects].
    """
    canvas = paint_scene(rng, scene_camera(rng, height, width, layout), layout)
    return canvas.objects, np.asarray(canvas.object_classes, dtype=np.uint8), canvas.details


def paint_scene(rng, camera, layout):
    """The Canvas of a random street scene drawn from `layout`, seen by `camera`."""
    height, width = camera.height, camera.width
    street = {"road_half": rng.uniform(*layout.road_half),
              "sidewalk": rng.uniform(*layout.sidewalk),
              "park": {side: rng.random() < layout.park_probability for side in (-1, 1)},
              "layout": layout}
    canvas = Canvas(height, width)
    _paint_skyline(canvas, camera, rng)
    _paint_ground(canvas, camera, street)
    outer = street["road_half"] + street["sidewalk"]
    for side in (-1, 1):
        if street["park"][side]:
            _paint_side_wall(canvas, camera, rng, side=side, lateral=outer + rng.uniform(3, 8),
                             class_id=VEGETATION, heights=(1.0, 2.5), lengths=(10.0, 40.0))
        else:
            _paint_side_wall(canvas, camera, rng, side=side, lateral=outer,
                             class_id=BUILDING, heights=layout.building_heights,
                             lengths=(8.0, 30.0), windows=layout.details)
    for distance, lateral, paint in sorted(_place_objects(rng, street), key=lambda p: -p[0]):
        paint(canvas, camera, rng, distance, lateral)
    if layout.bonnet:
        _paint_bonnet(canvas, camera, layout.bonnet)
    return canvas


# Appearance ---------------------------------------------------------------

def flat_colours(objects, object_classes, details, rng):
    """float32 [H, W, 3] in 0..255: each object's class colour (its details'
    colours where it has details) plus the object's own jitter."""
    jitter = rng.normal(0.0, OBJECT_COLOUR_JITTER, size=(len(object_classes), 3)).astype(
        np.float32)
    image = (_COLOUR_TABLE[object_classes] + jitter)[objects]
    if details.any():
        image = np.where(details[..., None] != NO_DETAIL,
                         _DETAIL_COLOUR_TABLE[details] + jitter[objects], image)
    return image


def target_colour_transform(image):
    """The target's global colour change: float [..., 3] in 0..255 -> same shape."""
    image = np.asarray(image, dtype=np.float32)
    # cv2.transform computes the per-pixel matrix product several times faster
    # than numpy; it wants a 3-channel 2-D image, hence the reshapes.
    pixels = image.reshape(-1, 1, 3)
    mixed = np.clip(cv2.transform(pixels, TARGET_CHANNEL_MIX / 255.0), 0.0, 1.0)
    mixed = mixed.reshape(image.shape)
    return 255.0 * (0.5 + TARGET_CONTRAST * (cv2.pow(mixed, TARGET_GAMMA) - 0.5) + TARGET_TINT)


def smooth_field(rng, height, width, cell=16):
    """float32 [height, width], unit scale, varying over about `cell` pixels."""
    coarse = rng.standard_normal((height // cell + 2, width // cell + 2), dtype=np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def vignette(height, width, strength=TARGET_VIGNETTING):
    """float32 [height, width]: 1 at the centre, 1 - `strength` at the corners."""
    y = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / height - 0.5
    x = (np.arange(width, dtype=np.float32)[None, :] + 0.5) / width - 0.5
    return 1.0 - strength * 2.0 * (x ** 2 + y ** 2)


def to_uint8(image):
    """float [H, W, 3] in 0..255 -> uint8, rounded."""
    return np.clip(image, 0, 255).round().astype(np.uint8)


def render_source(objects, object_classes, details, rng):
    """The synthetic look: uint8 [H, W, 3] flat colours with per-object jitter."""
    image = flat_colours(objects, object_classes, details, rng)
    return to_uint8(image)


def render_target(objects, object_classes, details, rng):
    """The real look: uint8 [H, W, 3]; see the module docstring."""
    height, width = objects.shape
    image = flat_colours(objects, object_classes, details, rng)
    grain = _GRAIN_TABLE[object_classes][objects] * rng.standard_normal((height, width),
                                                                        dtype=np.float32)
    shading = 1.0 + grain + TARGET_SHADING * smooth_field(rng, height, width)
    image = target_colour_transform(image * shading[..., None])
    image *= (rng.uniform(*TARGET_EXPOSURE) * vignette(height, width))[..., None]
    image = cv2.GaussianBlur(image, (0, 0), TARGET_BLUR_SIGMA)
    # Luminance noise (one draw per pixel, shared by the channels) is cheaper
    # than colour noise and looks the same at this amplitude.
    image += TARGET_NOISE * rng.standard_normal((height, width, 1), dtype=np.float32)
    return to_uint8(image)


# Each domain's (layout, renderer).
DOMAINS = {"demo_source": (STREET_LAYOUT, render_source),
           "demo_target": (STREET_LAYOUT, render_target),
           "demo_city": (CITY_LAYOUT, render_target)}
