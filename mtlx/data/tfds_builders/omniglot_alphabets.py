"""Omniglot alphabets as tasks (Yang & Hospedales 2017, DMTRL; Lake et al. 2015 data).

One task per alphabet: classify a drawing among that alphabet's characters.
Each example stores its ``alphabet`` index and its ``character`` index within
the alphabet, so it is labelled for its own alphabet's task only.

Images: the 105x105 PNGs are converted to grey, inverted (strokes 255 on a 0
background, like MNIST) and area-resized (PIL BOX) to 28x28 uint8.
Splits, per character: a permutation seeded by (seed, alphabet, character) of
its drawings (sorted by file name) puts 70% in train, 15% in validation and
15% in test (14/3/3 of the usual 20 drawings; each part gets at least one
drawing when there are three or more). Alphabets are sorted by name,
characters by folder name; an alphabet found in two zips (the two small
background subsets overlap) is taken once, from the first zip listed.

Config names are ``<subset>_seed<seed>``; subsets (zips of brendenlake/omniglot):
'all' = background + evaluation (50 alphabets, the paper's setting),
'background' (30), 'evaluation' (20), 'small1', 'small2', 'small' = small1 + small2.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import zipfile

import numpy as np
from PIL import Image

from mtlx.data.tfds_builders import common

URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
SUBSETS = {
    "all": ("images_background.zip", "images_evaluation.zip"),
    "background": ("images_background.zip",),
    "evaluation": ("images_evaluation.zip",),
    "small1": ("images_background_small1.zip",),
    "small2": ("images_background_small2.zip",),
    "small": ("images_background_small1.zip", "images_background_small2.zip"),
}
FRACTIONS = (0.7, 0.15, 0.15)  # train / validation / test, per character
SPLITS = ("train", "validation", "test")
SIZE = 28


def task_name(alphabet: str) -> str:
    """'Japanese_(hiragana)' -> 'japanese_hiragana'."""
    return re.sub(r"[^0-9a-z]+", "_", alphabet.lower()).strip("_")


def list_drawings(zip_paths) -> dict[str, dict[str, list[tuple[pathlib.Path, str]]]]:
    """``{alphabet: {character: [(zip, member), ...]}}`` over the zips, sorted, duplicates skipped."""
    found: dict[str, dict[str, list]] = {}
    owner: dict[str, pathlib.Path] = {}
    for zp in zip_paths:
        try:
            names = zipfile.ZipFile(zp).namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise common.CorruptSourceError(f"{zp}: not a readable zip file ({e})") from e
        for member in names:
            parts = member.split("/")
            if len(parts) != 4 or not parts[3].lower().endswith(".png"):
                continue  # layout: <zipname>/<Alphabet>/<characterNN>/<xxxx_yy>.png
            alphabet, character = parts[1], parts[2]
            if owner.setdefault(alphabet, zp) != zp:
                continue
            found.setdefault(alphabet, {}).setdefault(character, []).append((zp, member))
    if not found:
        raise common.CorruptSourceError(f"{[str(p) for p in zip_paths]}: no <zip>/<Alphabet>/<character>/<drawing>.png members")
    return {a: {c: sorted(found[a][c], key=lambda x: x[1]) for c in sorted(found[a])} for a in sorted(found)}


def split_sizes(n: int) -> tuple[int, int, int]:
    """Drawings of one character in (train, validation, test): 20 -> (14, 3, 3)."""
    if n < 3:
        return n, 0, 0
    val = max(1, round(FRACTIONS[1] * n))
    test = max(1, round(FRACTIONS[2] * n))
    return n - val - test, val, test


def assign_splits(n: int, seed: int, alphabet: int, character: int) -> np.ndarray:
    """(n,) split index (0 train, 1 validation, 2 test) for one character's sorted drawings."""
    perm = np.random.default_rng([seed, alphabet, character]).permutation(n)
    out = np.empty(n, np.int64)
    out[perm] = np.repeat(np.arange(3), split_sizes(n))
    return out


def prepare_image(png: bytes, name: str) -> np.ndarray:
    """PNG bytes -> (28, 28, 1) uint8, strokes bright."""
    grey = 255 - common.decode_png(png, name)
    return common.resize_uint8(grey, (SIZE, SIZE), resample=Image.BOX)[..., None]


@dataclasses.dataclass(eq=False)
class OmniglotConfig(common.SeedConfig):
    subset: str = "all"


class OmniglotAlphabets(common.Builder):
    """Omniglot drawings with alphabet and character indices (see module docstring)."""

    BUILDER_CONFIG_CLASS = OmniglotConfig
    BUILDER_CONFIGS = [OmniglotConfig(name=f"{s}_seed0", subset=s, seed=0) for s in SUBSETS]
    HOMEPAGE = "https://github.com/brendenlake/omniglot"
    CITATION = "Lake, Salakhutdinov & Tenenbaum, Human-level concept learning through probabilistic program induction, Science 2015."

    def _info(self):
        return self.make_info(
            {
                "image": common.image_feature((SIZE, SIZE, 1)),
                "alphabet": np.int32,
                "character": np.int32,
            },
            description=__doc__,
        )

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        names = SUBSETS[cfg.subset]
        if self.source_dir is None:
            paths = common.download(dl_manager, {n: URL + n for n in names})
        else:
            paths = common.local_files(self.name, self.source_dir, names, f"{URL}<name> (brendenlake/omniglot)")
        drawings = list_drawings([paths[n] for n in names])
        assignment = {
            (a, c): assign_splits(len(files), cfg.seed, a, c)
            for a, chars in enumerate(drawings.values())
            for c, files in enumerate(chars.values())
        }
        self.info.metadata.update(
            alphabets=list(drawings),
            num_characters=[len(chars) for chars in drawings.values()],
            source=f"{', '.join(names)} ({'downloaded from ' + URL if self.source_dir is None else 'from ' + str(self.source_dir)})",
            splits="per character, seeded 70/15/15% of its drawings (14/3/3 of 20) in train/validation/test",
            seed=cfg.seed,
        )
        return {s: self._generate_examples(drawings, assignment, k) for k, s in enumerate(SPLITS)}

    def _generate_examples(self, drawings, assignment, split: int):
        paths = {zp for chars in drawings.values() for files in chars.values() for zp, _ in files}
        zips = {zp: zipfile.ZipFile(zp) for zp in paths}
        for a, chars in enumerate(drawings.values()):
            for c, files in enumerate(chars.values()):
                for (zp, member), s in zip(files, assignment[a, c]):
                    if s == split:
                        image = prepare_image(zips[zp].read(member), f"{zp}:{member}")
                        yield member, {"image": image, "alphabet": a, "character": c}
