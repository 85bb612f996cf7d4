"""One line describing this machine, printed beside every latency or throughput figure."""
import os
import platform


# The CPU features that decide int8 convolution speed: a CPU with AMX runs the
# large int8 convolutions of a segmenter several times faster than one with
# VNNI alone, so a latency ratio between two graphs depends on them.
INT8_FEATURES = {"avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI", "amx_int8": "AMX-INT8"}


def _cpuinfo_value(key):
    """The first `key : value` of /proc/cpuinfo, or None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f
                         if line.split(":", 1)[0].strip() == key), None)
    except OSError:
        return None


def describe():
    """'Intel Xeon (AVX512-VNNI, AMX-INT8), 2 CPUs, Linux 6.1, Python 3.11, TF 2.21.0'-like
    line."""
    import tensorflow as tf

    model = _cpuinfo_value("model name") or platform.processor() or "unknown CPU"
    flags = (_cpuinfo_value("flags") or "").split()
    features = [name for flag, name in INT8_FEATURES.items() if flag in flags]
    if features:
        model += f" ({', '.join(features)})"
    return (f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, TF {tf.__version__}")
