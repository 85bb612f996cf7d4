"""The shift suite: demo target domains that each differ from `demo_source` in ONE way.

`demo_target` and `demo_city` (data_pipelines/demo.py) shift many things at
once and the demo preset was tuned watching them. These domains isolate one
kind of shift each, so a method's result on one says what it copes with:

- `demo_tone` (photometric): a per-image white balance and a tone curve
  (milky blacks, lifted shadows, an S-shaped contrast) on the source's flat
  colours. Every channel is mapped monotonically: no class changes place.
- `demo_sensor` (sensor): a rolling-shutter-like smear growing down the image,
  blur, strong vignetting, colour noise and JPEG artefacts.
- `demo_fog` (weather): fog thickening with each pixel's distance
  (`depth_map`), visibility drawn per image.
- `demo_rain` (weather): an overcast, low-contrast light and rain streaks.
- `demo_night` (light): dim ambient light, the ego car's headlights on the
  near road, a lamp glowing on top of every pole, sensor noise.
- `demo_texture` (texture): per-class stripes, bricks-like bands and
  blotches in the image plane, the flat colours' means kept.
- `demo_lens` (geometry): a wide lens pitched up, 2.6 m above the road (a
  bus), and a barrel distortion applied to the image and its label alike
  (nearest neighbour for the label; pixels from outside the frame 255).
- `demo_crowd` (class frequencies): more cars and persons, lower buildings,
  more parks; the source's look.

Every shift draws its scene from demo.py's layout generator (`demo_crowd`
and `demo_lens` from a `StreetLayout` of their own) and starts from the
source's flat colours, so a scene's labels are those the same random draws
give demo_source. Generating a 128 x 256 image and its label took 2.6-5.9 ms
on one core (the mean of 50, per domain: docs/datasets.md).

`DEVELOPMENT_SHIFTS` and `HELDOUT_SHIFTS` split the suite, before any tuning,
into the shifts a preset may be tuned on and those it is reported on
(docs/results.md, "The shift suite and its held-out split").
"""
import collections
import dataclasses
import functools
import hashlib
import inspect
import typing

import cv2
import numpy as np

from data_pipelines import demo

# A drawn scene: demo.scene_layout's maps, each object's distance (inf but for
# the things standing on the road) and the camera that saw them.
Scene = collections.namedtuple("Scene", "objects object_classes details distances camera")
GROUND = (demo.ROAD, demo.SIDEWALK, demo.TERRAIN)


@dataclasses.dataclass(frozen=True)
class Shift:
    """One domain of the suite: what differs from demo_source, and how it is drawn."""
    kind: str
    layout: demo.StreetLayout
    render: typing.Callable  # (Scene, rng, settings) -> (uint8 image, uint8 label)
    settings: dict            # the render's constants
    helpers: tuple = ()       # the functions of this module `render` calls


def label_of(scene):
    return scene.object_classes[scene.objects]


def depth_map(scene):
    """float32 [H, W] metres from the camera to each pixel's surface (inf: sky and skyline).

    A thing standing on the road (a car, a person, a pole and its sign, a
    tree) is where it stands; a ground pixel at the road distance of its own
    row; a wall at the road distance of the lowest row it reaches in that
    column, where it meets the ground.
    """
    objects, camera = scene.objects, scene.camera
    height = objects.shape[0]
    bottom = np.empty(objects.shape, dtype=np.float32)
    bottom[-1] = height - 1
    for row in range(height - 2, -1, -1):
        bottom[row] = np.where(objects[row] == objects[row + 1], bottom[row + 1], row)
    label = label_of(scene)
    own_row = np.broadcast_to(np.arange(height, dtype=np.float32)[:, None], objects.shape)
    rows = np.where(np.isin(label, GROUND), own_row, bottom) + 0.5
    with np.errstate(divide="ignore"):
        depth = np.where(rows > camera.horizon, camera.ground_distance(rows), np.inf)
    things = scene.distances[objects]
    depth = np.where(np.isfinite(things), things, depth)
    depth[label == demo.SKY] = np.inf
    return depth.astype(np.float32)


def _same_labels(render_image):
    """A render that changes only the image: (scene, rng, settings) -> (image, label)."""
    @functools.wraps(render_image)
    def render(scene, rng, settings):
        flat = demo.flat_colours(scene.objects, scene.object_classes, scene.details, rng)
        return demo.to_uint8(render_image(flat, scene, rng, settings)), label_of(scene)
    return render


@_same_labels
def render_tone(image, scene, rng, settings):
    gains = np.asarray(settings["white_balance"], np.float32) * (
        1.0 + rng.uniform(-1, 1, size=3).astype(np.float32) * settings["white_balance_spread"])
    x = np.clip(image * gains / 255.0, 0.0, 1.0) ** rng.uniform(*settings["gamma"])
    curved = (1 - settings["s_curve"]) * x + settings["s_curve"] * x * x * (3 - 2 * x)
    return 255.0 * (settings["black_level"] + (1 - settings["black_level"]) * curved)


@_same_labels
def render_sensor(image, scene, rng, settings):
    height, width = scene.objects.shape
    # A rolling shutter reads the rows one after another while the car moves:
    # the lower (nearer) rows smear over more pixels.
    bands = np.array_split(np.arange(height), len(settings["smear"]))
    image = np.concatenate([cv2.blur(image[band], (length, 1)) if length > 1 else image[band]
                            for band, length in zip(bands, settings["smear"])])
    image = cv2.GaussianBlur(image, (0, 0), settings["blur_sigma"])
    image *= demo.vignette(height, width, settings["vignetting"])[..., None]
    image += settings["noise"] * rng.standard_normal(image.shape, dtype=np.float32)
    quality = int(rng.integers(*settings["jpeg_quality"]))
    _, jpeg = cv2.imencode(".jpg", demo.to_uint8(image)[..., ::-1],
                           (cv2.IMWRITE_JPEG_QUALITY, quality))
    return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32)


@_same_labels
def render_fog(image, scene, rng, settings):
    visibility = rng.uniform(*settings["visibility"])  # metres where 5% of the light is left
    kept = np.exp(-3.0 * depth_map(scene) / visibility)[..., None]
    fog = np.asarray(settings["colour"], np.float32) * rng.uniform(0.9, 1.05)
    return image * kept + fog * (1.0 - kept)


@_same_labels
def render_rain(image, scene, rng, settings):
    height, width = scene.objects.shape
    image = settings["overcast_gain"] * image + settings["overcast_offset"]
    streaks = np.zeros((height, width), np.float32)
    slant = rng.uniform(-settings["slant"], settings["slant"])
    per_demo_image = rng.integers(*settings["streaks"])  # in a 128 x 256 image
    for _ in range(int(per_demo_image * height * width / (128 * 256))):
        row, col = rng.uniform(0, height), rng.uniform(0, width)
        length = rng.uniform(*settings["length"])
        cv2.line(streaks, (int(col), int(row)), (int(col + slant * length), int(row + length)),
                 rng.uniform(0.5, 1.0), 1, cv2.LINE_AA)
    return image + settings["brightness"] * streaks[..., None]


def _lamps(scene):
    """(row, column, size in pixels) of the top of every visible pole."""
    lamps = []
    for obj in np.flatnonzero(scene.object_classes == demo.POLE):
        rows, cols = np.nonzero(scene.objects == obj)
        if rows.size:
            lamps.append((rows.min(), cols.mean(), rows.max() - rows.min() + 1))
    return lamps


@_same_labels
def render_night(image, scene, rng, settings):
    height, width = scene.objects.shape
    y = np.arange(height, dtype=np.float32)[:, None] + 0.5
    x = np.arange(width, dtype=np.float32)[None, :] + 0.5
    beam = np.exp(-((x - scene.camera.vanishing_x) / (settings["beam_width"] * width)) ** 2)
    light = settings["ambient"] + settings["headlights"] * beam * np.exp(
        -depth_map(scene) / settings["headlight_reach"])
    glow = np.zeros((height, width), np.float32)
    for row, col, size in _lamps(scene):
        radius = max(settings["lamp_radius"] * size, 2.0)
        glow += np.exp(-((y - row) ** 2 + (x - col) ** 2) / radius ** 2)
    image = image * (light + settings["lamp_light"] * glow)[..., None]
    image += np.asarray(settings["lamp_colour"], np.float32) * np.minimum(glow, 1.0)[..., None]
    return image + settings["noise"] * rng.standard_normal((height, width, 1), np.float32)


def _class_table(values, default=0.0):
    table = np.full(256, default, dtype=np.float32)
    for class_id, value in values.items():
        table[class_id] = value
    return table


@_same_labels
def render_texture(image, scene, rng, settings):
    height, width = scene.objects.shape
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    label = label_of(scene)
    angle = _class_table(settings["angle"])[label]
    period = _class_table(settings["period"], 1.0)[label]
    phase = rng.uniform(0, 2 * np.pi, size=len(scene.object_classes)).astype(np.float32)
    stripes = np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period
                     + phase[scene.objects])
    blotches = demo.smooth_field(rng, height, width, cell=settings["blotch_cell"])
    texture = (_class_table(settings["stripes"])[label] * stripes
               + _class_table(settings["blotches"])[label] * blotches)
    return image * (1.0 + texture)[..., None]


@functools.lru_cache(maxsize=8)
def barrel_maps(height, width, strength):
    """cv2.remap's (map_x, map_y): the output pixel at radius r (a share of the
    half-diagonal) shows the input at radius s * r * (1 + strength * r^2), with
    s chosen so the middle of the left and right edges show the input's edges."""
    half_diagonal = np.hypot(height, width) / 2
    y = (np.arange(height, dtype=np.float32)[:, None] + 0.5 - height / 2) / half_diagonal
    x = (np.arange(width, dtype=np.float32)[None, :] + 0.5 - width / 2) / half_diagonal
    edge = (width / 2) / half_diagonal
    stretch = (1 + strength * (x ** 2 + y ** 2)) / (1 + strength * edge ** 2)
    return ((x * stretch * half_diagonal + width / 2 - 0.5).astype(np.float32),
            (y * stretch * half_diagonal + height / 2 - 0.5).astype(np.float32))


def distort(image, label, strength):
    """The barrel distortion of an image (bilinear) and its label (nearest; 255 outside)."""
    map_x, map_y = barrel_maps(*label.shape, strength)
    return (cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                      borderValue=0),
            cv2.remap(label, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                      borderValue=demo.EGO_VEHICLE))


def render_lens(scene, rng, settings):
    flat = demo.flat_colours(scene.objects, scene.object_classes, scene.details, rng)
    return distort(demo.to_uint8(flat), label_of(scene), settings["barrel"])


def render_flat(scene, rng, settings):
    flat = demo.flat_colours(scene.objects, scene.object_classes, scene.details, rng)
    return demo.to_uint8(flat), label_of(scene)


SHIFTS = {
    "demo_tone": Shift("photometric", demo.STREET_LAYOUT, render_tone, {
        "white_balance": (1.15, 1.0, 0.75), "white_balance_spread": 0.06, "gamma": (0.6, 0.75),
        "s_curve": 0.6, "black_level": 0.08}, (_same_labels,)),
    "demo_sensor": Shift("sensor", demo.STREET_LAYOUT, render_sensor, {
        "smear": (1, 3, 5, 7), "blur_sigma": 0.8, "vignetting": 0.45, "noise": 7.0,
        "jpeg_quality": (12, 30)}, (_same_labels,)),
    "demo_fog": Shift("weather: fog", demo.STREET_LAYOUT, render_fog, {
        "visibility": (45.0, 140.0), "colour": (205, 208, 212)}, (_same_labels, depth_map)),
    "demo_rain": Shift("weather: rain", demo.STREET_LAYOUT, render_rain, {
        "overcast_gain": 0.7, "overcast_offset": 25.0, "slant": 0.3, "streaks": (150, 350),
        "length": (6.0, 16.0), "brightness": 90.0}, (_same_labels,)),
    "demo_night": Shift("light: night", demo.STREET_LAYOUT, render_night, {
        "ambient": 0.25, "headlights": 1.2, "headlight_reach": 12.0, "beam_width": 0.3,
        "lamp_radius": 0.4, "lamp_light": 0.6, "lamp_colour": (160, 130, 70), "noise": 4.0},
        (_same_labels, depth_map, _lamps)),
    "demo_texture": Shift("texture", demo.STREET_LAYOUT, render_texture, {
        "angle": {demo.ROAD: 0.0, demo.SIDEWALK: 0.8, demo.BUILDING: np.pi / 2,
                  demo.VEGETATION: 0.3, demo.TERRAIN: -0.6, demo.CAR: 0.0, demo.PERSON: 1.2},
        "period": {demo.ROAD: 6.0, demo.SIDEWALK: 3.0, demo.BUILDING: 4.0,
                   demo.VEGETATION: 2.5, demo.TERRAIN: 5.0, demo.CAR: 3.0, demo.PERSON: 2.0},
        "stripes": {demo.ROAD: 0.1, demo.SIDEWALK: 0.2, demo.BUILDING: 0.25,
                    demo.VEGETATION: 0.3, demo.TERRAIN: 0.2, demo.CAR: 0.15, demo.PERSON: 0.2},
        "blotches": {demo.SKY: 0.12, demo.VEGETATION: 0.2, demo.ROAD: 0.1, demo.BUILDING: 0.1},
        "blotch_cell": 6}, (_same_labels, _class_table)),
    "demo_lens": Shift("geometry", dataclasses.replace(
        demo.STREET_LAYOUT, focal_per_width=0.6, horizon=(0.55, 0.65), camera_height=2.6),
        render_lens, {"barrel": 0.3}, (barrel_maps, distort)),
    "demo_crowd": Shift("class frequencies", dataclasses.replace(
        demo.STREET_LAYOUT, park_probability=0.7, building_heights=(3.0, 9.0), cars=(5, 9),
        persons=(6, 9)), render_flat, {}),
}


def generate(name, rng, size):
    """A scene of shift `name` drawn with `rng`: (uint8 [h, w, 3] image, uint8 [h, w] label)."""
    shift = SHIFTS[name]
    return shift.render(draw_scene(rng, size, shift.layout), rng, shift.settings)


def draw_scene(rng, size, layout):
    """The Scene of a street drawn from `layout` with `rng`, as demo.scene_layout draws it."""
    camera = demo.scene_camera(rng, *size, layout)
    canvas = demo.paint_scene(rng, camera, layout)
    return Scene(canvas.objects, np.asarray(canvas.object_classes, dtype=np.uint8),
                 canvas.details, np.asarray(canvas.object_distances, dtype=np.float32), camera)


# The split, fixed before any tuning. Rule, written before it was applied: the
# new shifts sorted by the sha256 of their name, the first half held out.
# demo_target and demo_city were tuned on already: development.
# Applied once, to the eight shifts above, before any row ran on them: held out
# demo_fog, demo_rain, demo_crowd, demo_night (docs/results.md records the
# digests their generators had then; tests/test_data_demo_shifts.py checks them).
DEVELOPMENT_SHIFTS = ("demo_target", "demo_city", "demo_tone", "demo_sensor", "demo_texture",
                      "demo_lens")
HELDOUT_SHIFTS = ("demo_fog", "demo_rain", "demo_night", "demo_crowd")
SUITE = DEVELOPMENT_SHIFTS + HELDOUT_SHIFTS


def held_out_by_rule(names):
    """The first half of `names` sorted by the sha256 of each name."""
    ordered = sorted(names, key=lambda name: hashlib.sha256(name.encode("utf-8")).hexdigest())
    return tuple(ordered[:len(ordered) // 2])


def generator_digest(name):
    """sha256 of what draws shift `name`: its render's and helpers' code, its
    settings and its layout, joined in this fixed order."""
    shift = SHIFTS[name]
    render = inspect.unwrap(shift.render)
    parts = [inspect.getsource(render), *map(inspect.getsource, shift.helpers),
             repr(sorted(shift.settings.items())), repr(shift.layout)]
    return hashlib.sha256("\n\0".join(parts).encode("utf-8")).hexdigest()
