"""One line describing this machine, printed beside every latency or throughput figure."""
import os
import platform


def describe():
    """'Intel Xeon, 2 CPUs, Linux 6.1, Python 3.11, TF 2.21.0'-like line."""
    import tensorflow as tf

    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, TF {tf.__version__}")
