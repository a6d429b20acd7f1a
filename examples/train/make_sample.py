"""Write examples/data/fmnist_test_16.npy (the first 16 Fashion-MNIST test
images preprocessed for lenet5: pixel/255, pad 0, (x-0.2860)/0.3530, float32,
[16,1,28,28]) and examples/data/fmnist_test_16_labels.npy (int64 [16])."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fmnist  # noqa: E402

out = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"))
os.makedirs(out, exist_ok=True)
images, labels = fmnist.load("t10k")
x = fmnist.preprocess(images[:16], pad=0).numpy().astype(np.float32)
y = labels[:16].astype(np.int64)
assert x.shape == (16, 1, 28, 28) and y.shape == (16,)
np.save(os.path.join(out, "fmnist_test_16.npy"), x)
np.save(os.path.join(out, "fmnist_test_16_labels.npy"), y)
print("labels:", y.tolist())
