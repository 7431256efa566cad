"""Datasets by name, read once and held as tensors on the training device.

`dataset.name=NAME` picks one record of `DATASETS` (loading.py); each source is a module
of its own, which registers its datasets when imported here:

    mnist, fashion_mnist, kmnist   mnist.py: torchvision's raw IDX files (<root>/MNIST/raw/...)
    cifar10                        cifar.py: torchvision's <root>/cifar-10-batches-py/ pickles
    tensors                        tensor_files.py: a .npz or .pt file of x_train, y_train, x_test, y_test
    toy_regression                 synthetic.py: a 1-D problem, y = x² + noise
    teacher                        synthetic.py: random inputs, labelled by a random linear teacher

types.py holds what they return (DataSpec, Source, Split, Data) and batching.py the batches
the loop slices from a split. Importing torchvision costs two seconds per process, so it is
imported only to download.
"""

# The sources register their datasets as they are imported, in the order `allowed:` lists them.
# isort: off
from regrun.components.datasets.types import Data, DataSpec, Source, Split
from regrun.components.datasets.loading import (
    DATASETS,
    DatasetRecord,
    DatasetSettings,
    load_data,
    open_dataset,
    register_dataset,
)
from regrun.components.datasets.mnist import IDX_DATASETS, IDX_UBYTE, DatasetInfo, open_idx, read_idx, unpack_dir
from regrun.components.datasets.cifar import (
    CIFAR_FOLDER,
    CIFAR_MEAN,
    CIFAR_META,
    CIFAR_SHAPE,
    CIFAR_STD,
    CIFAR_TEST,
    CIFAR_TRAIN,
    PICKLE_ALLOWED,
    open_cifar10,
    read_pickle,
)
from regrun.components.datasets.tensor_files import TENSOR_KEYS, open_tensors
from regrun.components.datasets.synthetic import open_teacher, open_toy_regression
from regrun.components.datasets.batching import batches, chunks
# isort: on

__all__ = [
    "CIFAR_FOLDER", "CIFAR_MEAN", "CIFAR_META", "CIFAR_SHAPE", "CIFAR_STD", "CIFAR_TEST", "CIFAR_TRAIN",
    "DATASETS", "IDX_DATASETS", "IDX_UBYTE", "PICKLE_ALLOWED", "TENSOR_KEYS",
    "Data", "DataSpec", "DatasetInfo", "DatasetRecord", "DatasetSettings", "Source", "Split",
    "batches", "chunks", "load_data", "open_cifar10", "open_dataset", "open_idx", "open_teacher",
    "open_tensors", "open_toy_regression", "read_idx", "read_pickle", "register_dataset", "unpack_dir",
]
