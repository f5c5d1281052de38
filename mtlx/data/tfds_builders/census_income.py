"""UCI Census-Income (KDD) for MMoE's task pairs (Ma et al. 2018, "Modeling Task
Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts", KDD).

Labels (all stored; the task set picks a pair):
  income_50k      income_50k == '50000+.'
  never_married   marital_stat == 'Never married'
  college         education is a college degree: one of COLLEGE_DEGREES, i.e.
                  associates (both kinds), bachelors, masters, professional
                  school or doctorate. 'Some college but no degree' is not a
                  degree, so it counts as 0, as do all school grades.
MMoE group 1 = (income_50k, never_married); group 2 = (college, never_married).

Inputs: the 42 columns minus the label sources (income_50k, marital_stat,
education) and instance_weight (a sampling weight): 7 numeric columns,
standardised with the training portion's mean and std, and 31 categorical
columns one-hot encoded over the training portion's values (sorted); a value
unseen in training encodes as all zeros. Stored as one float32 vector.

Splits: with both originals (census-income.data.gz, 199,523 rows;
census-income.test.gz, 99,762 rows), train = the data file and the test file
is split 1:1 by a seeded permutation into validation and test, as in MMoE.
With only the test file (the local copy), its rows are split 70/15/15 by a
seeded permutation into train/validation/test.
"""

from __future__ import annotations

import numpy as np

from mtlx.data.tfds_builders import common

URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/census-income-mld/"
DATA_FILE, TEST_FILE = "census-income.data.gz", "census-income.test.gz"
COLUMNS = (
    "age", "class_worker", "det_ind_code", "det_occ_code", "education", "wage_per_hour", "hs_college",
    "marital_stat", "major_ind_code", "major_occ_code", "race", "hisp_origin", "sex", "union_member",
    "unemp_reason", "full_or_part_emp", "capital_gains", "capital_losses", "stock_dividends",
    "tax_filer_stat", "region_prev_res", "state_prev_res", "det_hh_fam_stat", "det_hh_summ",
    "instance_weight", "mig_chg_msa", "mig_chg_reg", "mig_move_reg", "mig_same", "mig_prev_sunbelt",
    "num_emp", "fam_under_18", "country_father", "country_mother", "country_self", "citizenship",
    "own_or_self", "vet_question", "vet_benefits", "weeks_worked", "year", "income_50k",
)  # fmt: skip
# Continuous per census-income.names; the coded columns (industry/occupation codes,
# own_or_self, vet_benefits, year) are nominal and one-hot encoded.
NUMERIC = ("age", "wage_per_hour", "capital_gains", "capital_losses", "stock_dividends", "num_emp", "weeks_worked")
EXCLUDED = ("income_50k", "marital_stat", "education", "instance_weight")
CATEGORICAL = tuple(c for c in COLUMNS if c not in NUMERIC and c not in EXCLUDED)
COLLEGE_DEGREES = (
    "Associates degree-academic program",
    "Associates degree-occup /vocational",
    "Bachelors degree(BA AB BS)",
    "Masters degree(MA MS MEng MEd MSW MBA)",
    "Prof school degree (MD DDS DVM LLB JD)",
    "Doctorate degree(PhD EdD)",
)
LABELS = ("income_50k", "never_married", "college")
GROUPS = {1: ("income_50k", "never_married"), 2: ("college", "never_married")}
ONLY_TEST_FRACTIONS = (0.7, 0.15, 0.15)


def parse(paths) -> tuple[list[np.ndarray], list[list[str]]]:
    """Reads the csv files into ``(per file (rows, 42) int32 codes, per column code -> stripped string)``.

    Codes are shared across files, which keeps 300k rows x 42 columns small in memory.
    """
    lookups: list[dict[str, int]] = [{} for _ in COLUMNS]
    tables = []
    for path in paths:
        rows = []
        for n, line in enumerate(common.read_text_lines(path), 1):
            if not line.strip():
                continue
            fields = line.split(",")
            if len(fields) != len(COLUMNS):
                raise common.CorruptSourceError(f"{path}, line {n}: {len(fields)} comma-separated columns, expected {len(COLUMNS)}")
            rows.append([lk.setdefault(f.strip(), len(lk)) for lk, f in zip(lookups, fields)])
        if not rows:
            raise common.CorruptSourceError(f"{path}: no rows")
        tables.append(np.asarray(rows, np.int32))
    return tables, [list(lk) for lk in lookups]


def column(codes: np.ndarray, values: list[list[str]], name: str, dtype=object) -> np.ndarray:
    """One column of a code table as strings (or numbers with ``dtype=float``)."""
    i = COLUMNS.index(name)
    try:
        return np.asarray(values[i], dtype=dtype)[codes[:, i]]
    except ValueError as e:
        raise common.CorruptSourceError(f"census column {name!r} holds a non-numeric value ({e})") from e


def labels(codes, values) -> dict[str, np.ndarray]:
    return {
        "income_50k": column(codes, values, "income_50k") == "50000+.",
        "never_married": column(codes, values, "marital_stat") == "Never married",
        "college": np.isin(column(codes, values, "education"), COLLEGE_DEGREES),
    }


def fit_encoder(train_codes: np.ndarray, values) -> dict:
    """Standardisation stats and one-hot vocabularies of the training rows (JSON-able)."""
    numeric = np.stack([column(train_codes, values, c, float) for c in NUMERIC], axis=1)
    std = numeric.std(axis=0)
    vocab = {}
    for c in CATEGORICAL:
        i = COLUMNS.index(c)
        vocab[c] = sorted(values[i][k] for k in np.unique(train_codes[:, i]))
    return {"numeric": list(NUMERIC), "mean": numeric.mean(axis=0).tolist(), "std": np.where(std > 0, std, 1.0).tolist(), "vocab": vocab}


def feature_names(encoder: dict) -> list[str]:
    return list(encoder["numeric"]) + [f"{c}={v}" for c in CATEGORICAL for v in encoder["vocab"][c]]


def encode(codes: np.ndarray, values, encoder: dict) -> np.ndarray:
    """(rows, 42) codes -> (rows, D) float32: standardised numerics, then one-hots in CATEGORICAL order.

    A value not in the training vocabulary encodes as all zeros.
    """
    numeric = np.stack([column(codes, values, c, float) for c in NUMERIC], axis=1)
    blocks = [((numeric - encoder["mean"]) / encoder["std"]).astype(np.float32)]
    for c in CATEGORICAL:
        vocab = {v: j for j, v in enumerate(encoder["vocab"][c])}
        slot = np.array([vocab.get(v, -1) for v in values[COLUMNS.index(c)]])[codes[:, COLUMNS.index(c)]]
        blocks.append((slot[:, None] == np.arange(len(vocab))[None, :]).astype(np.float32))
    return np.concatenate(blocks, axis=1)


def split_rows(files: dict[str, np.ndarray], seed: int) -> tuple[dict[str, np.ndarray], str]:
    """train/validation/test rows and a description of the split."""
    test = files[TEST_FILE]
    if DATA_FILE in files:
        val, tst = common.carve(len(test), [0.5, 0.5], seed)
        return {"train": files[DATA_FILE], "validation": test[val], "test": test[tst]}, (
            "MMoE protocol: train = census-income.data; census-income.test split 1:1 (seeded) into validation and test"
        )
    parts = common.carve(len(test), ONLY_TEST_FRACTIONS, seed)
    return dict(zip(("train", "validation", "test"), (test[p] for p in parts))), (
        "only census-income.test available: its rows split 70/15/15 (seeded) into train/validation/test; "
        "the paper trains on census-income.data (199,523 rows) instead"
    )


class CensusIncome(common.Builder):
    """Census-Income (KDD): encoded feature vector + three binary labels (see module docstring)."""

    BUILDER_CONFIGS = [common.SeedConfig(name="seed0", seed=0)]
    HOMEPAGE = "https://archive.ics.uci.edu/dataset/117/census+income+kdd"
    CITATION = "Ma et al., Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts, KDD 2018."

    def _info(self):
        return self.make_info(
            {
                "features": common.vector_feature(np.float32),
                "instance_weight": np.float32,
                **{name: np.int32 for name in LABELS},
            },
            description=__doc__,
        )

    def _split_generators(self, dl_manager):
        if self.source_dir is None:
            paths = common.download(dl_manager, {f: URL + f for f in (DATA_FILE, TEST_FILE)})
        else:
            paths = common.local_files(self.name, self.source_dir, [TEST_FILE], URL + " (UCI Census-Income KDD)", [DATA_FILE])
        names = sorted(paths)
        tables, values = parse([paths[n] for n in names])
        splits, description = split_rows(dict(zip(names, tables)), self.builder_config.seed)
        encoder = fit_encoder(splits["train"], values)
        self.info.metadata.update(
            encoder=encoder,
            feature_names=feature_names(encoder),
            splits=description,
            source=f"{', '.join(sorted(paths))} ({'downloaded from ' + URL if self.source_dir is None else 'from ' + str(self.source_dir)})",
            college_degrees=list(COLLEGE_DEGREES),
            groups={str(k): list(v) for k, v in GROUPS.items()},
            seed=self.builder_config.seed,
        )
        return {name: self._generate_examples(codes, values, encoder) for name, codes in splits.items()}

    def _generate_examples(self, codes, values, encoder, chunk: int = 4096):
        for start in range(0, len(codes), chunk):
            part = codes[start : start + chunk]
            x, y = encode(part, values, encoder), labels(part, values)
            weight = column(part, values, "instance_weight", np.float32)
            for i in range(len(part)):
                yield start + i, {"features": x[i], "instance_weight": weight[i], **{k: int(v[i]) for k, v in y.items()}}
