"""Dataset readers (GTA5, SYNTHIA, Cityscapes, built-in demo domains) and tf.data pipelines."""
