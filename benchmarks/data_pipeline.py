"""Throughput of the data pipelines on this machine, measured in one run.

    python benchmarks/data_pipeline.py [--pairs=12] [--patches=60]

1. The source pipeline on full-size GTA5-format files: 1914x1052 RGB PNGs
   and 8-bit palette label PNGs, written to a temporary folder first, read
   by `supervised_patches` into 600x600 patches (batch 5, flips), with the
   paper's resize widths. Reports patches per second.
2. The built-in demo domains: milliseconds per generated scene (median and
   minimum over interleaved rounds), and the median rate divided by the rate
   at which the demo's source-only step consumes images (measured here too):
   above 1, data never holds training back.
"""
import statistics
import tempfile
import time

from absl import app, flags

from common import GTA5_SIZE, machine, write_full_size_gta5

FLAGS = flags.FLAGS
flags.DEFINE_integer("pairs", 12, "Full-size GTA5-format image/label pairs to write.")
flags.DEFINE_integer("patches", 60, "600x600 patches timed per setting (after one warm-up batch).")
flags.DEFINE_integer("demo_images", 40, "Demo images generated per domain in each round.")
flags.DEFINE_integer("demo_rounds", 7, "Interleaved rounds over the demo domains.")
flags.DEFINE_integer("demo_steps", 20, "Demo source-only steps timed (after tracing).")

def patches_per_second(dataset, *, resize_width, patches):
    from data_pipelines import supervised_patches

    batch = 5
    stream = iter(supervised_patches(dataset, patch_size=600, resize_width=resize_width,
                                     batch_size=batch, flip=True, seed=0))
    next(stream)  # warm-up: thread pools, first decodes
    batches = max(1, patches // batch)
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return batches * batch / (time.perf_counter() - start)


def demo_generation_ms(domains, count, rounds):
    """{domain: [ms per scene of each round]}, the domains taking turns each round."""
    from data_pipelines import demo_domains

    times = {domain: [] for domain in domains}
    for round_index in range(rounds):
        for domain in domains:
            first = round_index * count
            start = time.perf_counter()
            for index in range(first, first + count):
                demo_domains.generate_scene(domain, "train", index)
            times[domain].append(1000 * (time.perf_counter() - start) / count)
    return times


def demo_step_images_per_second(steps):
    import tensorflow as tf

    from udamobile import config as config_lib
    from udamobile.training.stages import get_stage
    from udamobile.training.state import TrainingState

    cfg = config_lib.get_config("demo", "source_only")
    stage = get_stage("source_only")
    state = TrainingState(cfg, stage)
    step = stage.make_step(state, cfg, stage.active_updates(0, cfg))
    b, p = cfg.optim.batch_size, cfg.data.patch_size
    batch = {"image": tf.zeros([b, p, p, 3]), "label": tf.zeros([b, p, p], tf.int32)}
    step(batch)  # tracing
    start = time.perf_counter()
    for _ in range(steps):
        step(batch)["loss/ce"].numpy()
    return steps * b / (time.perf_counter() - start)


def main(argv):
    del argv
    from data_pipelines import open_dataset

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        write_full_size_gta5(root, FLAGS.pairs)
        print(f"wrote {FLAGS.pairs} GTA5-format pairs at {GTA5_SIZE[1]}x{GTA5_SIZE[0]} "
              f"in {time.perf_counter() - started:.1f} s")
        dataset = open_dataset("gta5", root, "train")
        print("\nsource pipeline, 600x600 patches, batch 5, from full-size PNGs:")
        for width, origin in ((1914, "full width, authors' stage 1"),
                              (1536, "authors' stage 2 GTA5 width"),
                              (1024, "a lighter choice")):
            rate = patches_per_second(dataset, resize_width=width, patches=FLAGS.patches)
            print(f"  resize_width={width:<5} ({origin}): {rate:6.1f} patches/s")

    print("\nbuilt-in demo domains (128x256, generated on demand):")
    times = demo_generation_ms(("demo_source", "demo_target", "demo_city"),
                               FLAGS.demo_images, FLAGS.demo_rounds)
    rates = {}
    for domain, ms in times.items():
        median = statistics.median(ms)
        rates[domain] = 1000 / median
        print(f"  {domain}: {median:.2f} ms per scene median, {min(ms):.2f} min "
              f"({len(ms)} interleaved rounds of {FLAGS.demo_images})")
    consumed = demo_step_images_per_second(FLAGS.demo_steps)
    print(f"  demo source-only step consumes {consumed:.1f} images/s (batch 8, 64x64 patches)")
    ratios = ", ".join(f"{domain} {rate / consumed:.1f}x" for domain, rate in rates.items())
    print(f"  ratio generation / consumption: {ratios} (one thread; tf.data uses both cores)")


if __name__ == "__main__":
    app.run(main)
