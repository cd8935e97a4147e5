"""Class names of the built-in datasets, known without loading any data, and CIFAR-100's 20
coarse groups (superclasses). The names and their order are those the loaders produce."""

from __future__ import annotations

from pathlib import Path

from kdtool.data.embedded import FASHION_MNIST_CLASSES
from kdtool.data.text import is_text_dataset, text_class_names
from kdtool.errors import KdtoolError, unknown_choice

MNIST_CLASSES = tuple(f"{i} - {word}" for i, word in enumerate(
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")))  # fmt: skip
SVHN_CLASSES = tuple(str(i) for i in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# The coarse labels of CIFAR-100 (Krizhevsky 2009), five fine classes each.
CIFAR100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
# torchvision orders the fine classes alphabetically.
CIFAR100_CLASSES = tuple(sorted(name for group in CIFAR100_SUPERCLASSES.values() for name in group))

BUILTIN_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "fashion-mnist": FASHION_MNIST_CLASSES,
    "mnist": MNIST_CLASSES,
    "svhn": SVHN_CLASSES,
    "cifar10": CIFAR10_CLASSES,
    "cifar100": CIFAR100_CLASSES,
}


def dataset_class_names(spec: str) -> list[str]:
    """The class names of ``--dataset`` without loading it: built-in sets, or the class folders of
    ``imagefolder:PATH`` (``PATH/train/<class>``, sorted as torchvision's ImageFolder sorts them), or
    of a text dataset (GoEmotions, ``text:PATH``)."""
    if is_text_dataset(spec):
        return list(text_class_names(spec))
    if spec.startswith("imagefolder:"):
        train = Path(spec.removeprefix("imagefolder:")).expanduser() / "train"
        if not train.is_dir():
            raise KdtoolError(f"{spec} has no train/ folder to read class names from")
        names = sorted(entry.name for entry in train.iterdir() if entry.is_dir())
        if not names:
            raise KdtoolError(f"{train} has no class folders")
        return names
    if spec not in BUILTIN_CLASS_NAMES:
        raise unknown_choice("dataset", spec, (*BUILTIN_CLASS_NAMES, "goemotions", "goemotions-ekman"),
                             f"{', '.join(BUILTIN_CLASS_NAMES)}, imagefolder:PATH, goemotions, goemotions-ekman or "
                             "text:PATH")  # fmt: skip
    return list(BUILTIN_CLASS_NAMES[spec])
