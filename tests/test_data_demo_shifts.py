"""The shift suite: each domain is drawn like the others and differs from demo_source
in the one way it claims; the held-out shifts keep the generators they were split with."""
import os
import re

import numpy as np
import pytest

import data_pipelines
from data_pipelines import demo, demo_domains, demo_shifts

SIZE = (64, 128)
DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def _pair(name, seed, size=SIZE):
    """(source image, source label, shift image, shift label) drawn from the same seed:
    the same street, rendered as demo_source and as the shift."""
    rng = np.random.default_rng(seed)
    objects, object_classes, details = demo.scene_layout(rng, *size)
    source = demo.render_source(objects, object_classes, details, rng), object_classes[objects]
    return (*source, *demo_shifts.generate(name, np.random.default_rng(seed), size))


@pytest.fixture(scope="module")
def pairs():
    """{shift: [(source image, source label, image, label)] of 6 seeds} (layout-keeping shifts)."""
    return {name: [_pair(name, seed) for seed in range(6)] for name in demo_shifts.SHIFTS
            if demo_shifts.SHIFTS[name].layout == demo.STREET_LAYOUT}


def _luminance(image):
    return image.astype(np.float32).mean(axis=-1)


def test_every_shift_is_a_dataset_with_a_labelled_val_split_drawn_deterministically():
    assert set(demo_shifts.SUITE) == set(demo_shifts.SHIFTS) | {"demo_target", "demo_city"}
    for name in demo_shifts.SHIFTS:
        assert data_pipelines.SPLITS[name] == ("train", "val")
        dataset = data_pipelines.open_dataset(name, split="val")
        assert len(dataset) == 200 and dataset.has_labels
        image, label = dataset.read_pair(3)
        assert image.shape == (128, 256, 3) and image.dtype == np.uint8
        assert label.shape == (128, 256) and label.dtype == np.uint8
        assert set(np.unique(label)) <= set(demo.SCENE_CLASSES) | {255}
        again = demo_domains.generate_scene(name, "val", 3)
        np.testing.assert_array_equal(image, again[0])
        np.testing.assert_array_equal(label, again[1])
        assert not np.array_equal(label, demo_domains.generate_scene(name, "train", 3)[1])


def test_the_appearance_shifts_keep_the_sources_streets(pairs):
    assert set(pairs) == {"demo_tone", "demo_sensor", "demo_fog", "demo_rain", "demo_night",
                          "demo_texture"}
    for name, drawn in pairs.items():
        for source_image, source_label, image, label in drawn:
            np.testing.assert_array_equal(label, source_label, err_msg=name)
            assert np.abs(image.astype(float) - source_image).mean() > 5, name


def test_tone_maps_each_channel_monotonically_so_no_class_changes_place(pairs):
    for source_image, _, image, _ in pairs["demo_tone"]:
        for channel in range(3):
            order = np.argsort(source_image[..., channel].ravel(), kind="stable")
            # Ties in the source's rounding may reorder by a step or two, no more.
            assert np.diff(image[..., channel].ravel()[order].astype(int)).min() >= -2
        assert np.abs(image.astype(float) - source_image).mean() > 15


def test_fog_thickens_with_the_distance_the_layout_gives_each_pixel(pairs):
    scene = demo_shifts.draw_scene(np.random.default_rng(0), SIZE, demo.STREET_LAYOUT)
    depth, label = demo_shifts.depth_map(scene), demo_shifts.label_of(scene)
    assert np.isinf(depth[label == demo.SKY]).all() and np.isfinite(depth[label == demo.ROAD]).all()
    road_rows = [depth[row][label[row] == demo.ROAD].mean() for row in range(SIZE[0])
                 if (label[row] == demo.ROAD).any()]
    assert np.all(np.diff(road_rows) < 0)  # nearer further down
    near, far = [], []
    for seed in range(6):
        depth = demo_shifts.depth_map(demo_shifts.draw_scene(
            np.random.default_rng(seed), SIZE, demo.STREET_LAYOUT))
        source_image, _, image, _ = pairs["demo_fog"][seed]
        change = np.abs(image.astype(float) - source_image).mean(axis=-1)
        near.append(change[depth < 10].mean())
        far.append(change[(depth > 40) & np.isfinite(depth)].mean())
    assert np.mean(far) > 2 * np.mean(near)


def test_night_is_dark_but_for_the_headlights_on_the_near_road(pairs):
    for source_image, label, image, _ in pairs["demo_night"]:
        assert _luminance(image).mean() < 0.55 * _luminance(source_image).mean()
        lit = _luminance(image) / np.maximum(_luminance(source_image), 1)
        road = label == demo.ROAD
        assert lit[-4:][road[-4:]].mean() > 1.5 * lit[SIZE[0] // 2:-8][road[SIZE[0] // 2:-8]].min()


def test_rain_is_an_overcast_light_with_bright_streaks(pairs):
    for source_image, _, image, _ in pairs["demo_rain"]:
        brighter = _luminance(image) - _luminance(0.7 * source_image.astype(float) + 25)
        streaks = np.abs(brighter) > 3
        # Elsewhere the image is the source's under a dull light, contrast down to 70%.
        assert 0.01 < streaks.mean() < 0.2
        assert (brighter[streaks] > 0).mean() > 0.95


def test_sensor_noise_jpeg_and_smear_roughen_flat_surfaces(pairs):
    for source_image, label, image, _ in pairs["demo_sensor"]:
        sky = label == demo.SKY
        assert image[sky].astype(float).std(axis=0).mean() > 2 * source_image[sky].astype(
            float).std(axis=0).mean() + 2


def test_texture_keeps_each_class_colour_and_adds_patterns(pairs):
    for source_image, label, image, _ in pairs["demo_texture"]:
        for class_id in (demo.ROAD, demo.BUILDING):
            pixels = label == class_id
            if pixels.sum() < 200:
                continue
            before, after = source_image[pixels].astype(float), image[pixels].astype(float)
            assert np.abs(after.mean(axis=0) - before.mean(axis=0)).max() < 15
            assert after.std(axis=0).mean() > 2 * before.std(axis=0).mean()


def _class_means(images, labels):
    pixels, ids = np.concatenate([i.reshape(-1, 3) for i in images]), np.concatenate(
        [label.ravel() for label in labels])
    return {c: pixels[ids == c].astype(float).mean(axis=0) for c in np.unique(ids) if c != 255}


def test_the_lens_distorts_image_and_label_alike_and_marks_the_corners_ignored():
    scenes = [demo_domains.generate_scene("demo_lens", "val", i, SIZE) for i in range(6)]
    means = _class_means(*zip(*[demo_domains.generate_scene("demo_source", "heldout", i, SIZE)
                                for i in range(6)]))
    classes, centres = np.array(list(means)), np.stack(list(means.values()))
    right = total = 0
    for image, label in scenes:
        assert (label[0, 0] == 255 and label[-1, -1] == 255 and (image[0, 0] == 0).all())
        scored = label != 255
        nearest = classes[((image[scored][:, None].astype(float) - centres) ** 2).sum(-1).argmin(1)]
        right, total = right + np.sum(nearest == label[scored]), total + scored.sum()
    # The same flat colours: a label moved otherwise than its pixels would miss its edges.
    assert right / total > 0.97
    # A straight vertical line bends outward away from the image's centre row.
    map_x, _ = demo_shifts.barrel_maps(*SIZE, demo_shifts.SHIFTS["demo_lens"].settings["barrel"])
    assert map_x[0, 5] < map_x[SIZE[0] // 2, 5]


def test_crowd_shifts_the_class_frequencies_and_the_lens_the_camera():
    share = {}
    for name in ("demo_source", "demo_crowd", "demo_lens"):
        split = "heldout" if name == "demo_source" else "val"
        labels = np.stack([demo_domains.generate_scene(name, split, i, SIZE)[1]
                           for i in range(40)])
        share[name] = np.bincount(labels.ravel(), minlength=256) / labels.size
    source, crowd = share["demo_source"], share["demo_crowd"]
    assert crowd[demo.PERSON] > 1.3 * source[demo.PERSON]
    assert crowd[demo.CAR] > 1.5 * source[demo.CAR]
    assert crowd[demo.BUILDING] < 0.7 * source[demo.BUILDING]
    # Pitched up from higher: more sky; the barrel's corners are ignored.
    assert share["demo_lens"][demo.SKY] > 1.2 * source[demo.SKY]
    assert 0.0 < share["demo_lens"][255] < 0.05


def _recorded_digests():
    """{shift: sha256} of the held-out generators, as docs/results.md records them."""
    with open(os.path.join(DOCS, "results.md"), encoding="utf-8") as f:
        return dict(re.findall(r"^\| `(demo_\w+)` \| `([0-9a-f]{64})` \|", f.read(), re.M))


def test_the_split_follows_its_rule_and_the_held_out_generators_never_change():
    new_shifts = list(demo_shifts.SHIFTS)
    assert set(demo_shifts.HELDOUT_SHIFTS) == set(demo_shifts.held_out_by_rule(new_shifts))
    assert {"demo_target", "demo_city"} <= set(demo_shifts.DEVELOPMENT_SHIFTS)
    assert not set(demo_shifts.DEVELOPMENT_SHIFTS) & set(demo_shifts.HELDOUT_SHIFTS)
    recorded = _recorded_digests()
    assert set(recorded) == set(demo_shifts.HELDOUT_SHIFTS)
    for name, digest in recorded.items():
        assert demo_shifts.generator_digest(name) == digest, (
            f"{name}'s generator changed: a held-out shift may not change after the split; "
            "add a new shift instead")
