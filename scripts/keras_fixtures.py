"""Writes the Keras import fixtures with the real Keras releases users save models with.

Input: testdata/parity/seed_random.h5 (the seed architecture with random weights, Keras 3 legacy
HDF5 layout; its Keras outputs are in testdata/parity/expected.json). Outputs, in OUT_DIR:

- seed_random.keras       the same model in Keras 3's native zip format (keras.saving)
- seed_random_keras2.h5   the same weights saved by Keras 2 (tf_keras), the layout of older files
- fixtures.json           versions that wrote them and the sha256 of the input they were made from

The Rust tests import both and require bit-identical weights to the imported seed_random.h5, so
the files exercise the importer against whatever the pinned Keras versions actually write.
Deterministic apart from timestamps inside the containers: the weights are copied, never drawn.
"""

import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ["KERAS_BACKEND"] = "tensorflow"


def seed_layers(api):
    """The seed service's network, layer for layer, built with `api` (keras or tf_keras)."""
    L = api.layers
    return [
        L.Conv2D(16, (3, 3), activation="relu", name="conv2d"),
        L.Conv2D(16, (3, 3), activation="relu", name="conv2d_1"),
        L.MaxPooling2D((2, 2), name="max_pooling2d"),
        L.Flatten(name="flatten"),
        L.Dense(32, activation="relu", name="dense"),
        L.Dense(16, activation="relu", name="dense_1"),
        L.Dense(1, activation="sigmoid", name="dense_2"),
    ]


def main(src, out_dir):
    import keras
    import numpy as np
    import tf_keras

    os.makedirs(out_dir, exist_ok=True)
    k3 = keras.saving.load_model(src, compile=False)
    weights = k3.get_weights()

    zip_path = os.path.join(out_dir, "seed_random.keras")
    k3.save(zip_path)

    k2 = tf_keras.Sequential([tf_keras.Input(shape=(128, 469, 1))] + seed_layers(tf_keras))
    k2.set_weights(weights)
    for a, b in zip(weights, k2.get_weights()):
        if not np.array_equal(a, b):
            sys.exit("tf_keras changed a weight on copy")
    h5_path = os.path.join(out_dir, "seed_random_keras2.h5")
    k2.save(h5_path, save_format="h5")

    with open(src, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    meta = {
        "source": os.path.basename(src),
        "source_sha256": digest,
        "keras": keras.__version__,
        "tf_keras": tf_keras.__version__,
        "files": ["seed_random.keras", "seed_random_keras2.h5"],
    }
    with open(os.path.join(out_dir, "fixtures.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(f"wrote {zip_path} (Keras {keras.__version__}) and {h5_path} (tf_keras {tf_keras.__version__})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: keras_fixtures.py SEED_RANDOM_H5 OUT_DIR")
    main(sys.argv[1], sys.argv[2])
