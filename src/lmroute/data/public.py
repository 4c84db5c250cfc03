"""The public data lmroute can use, and the one rule for finding it.

Every file lmroute may fetch from the internet is listed here, in *parts* a command asks for
(``mmlu``, ``gsm8k``, ``mt-bench``: RouteLLM's evaluation data; ``arena-hard``: the calibration
sample). A part's files live in a *data folder* under the part's folder (``routellm-evals/``,
``arena-hard/``), which is also the layout of ``../shared/data`` and of what ``lmroute data pull``
writes. :func:`locate` finds a part's files by one rule, the same for every command and the
Python API:

1. the data folder passed in (``--data-dir`` on the command line, ``data_dir=`` in Python);
2. the ``LMROUTE_DATA_DIR`` environment variable;
3. the user cache (``<cache>/<folder>/``, see :func:`lmroute._paths.cache_dir`);
4. only then a download into the user cache, of that part's files alone.

A data folder that holds the part's folder is used as it is: a file missing there is an error
naming it (a broken copy is never patched from the internet). A data folder without the part's
folder is passed over. A data folder that does not exist is an error (a typo should not start a
download). The download source of each dataset can be moved (a mirror, or loopback in tests) by
its environment variable (``url_env``) or the ``download_url`` argument.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lmroute.exceptions import ConfigError, DataError, WriteError

#: The environment variable naming the data folder (step 2 of the rule).
DATA_DIR_ENV = "LMROUTE_DATA_DIR"

#: The 57 MMLU subjects, in the order their rows are read (benchmark positions depend on it).
MMLU_DOMAINS = tuple(
    """
    high_school_european_history business_ethics clinical_knowledge medical_genetics
    high_school_us_history high_school_physics high_school_world_history virology
    high_school_microeconomics econometrics college_computer_science high_school_biology
    abstract_algebra professional_accounting philosophy professional_medicine nutrition global_facts
    machine_learning security_studies public_relations professional_psychology prehistory anatomy
    human_sexuality college_medicine high_school_government_and_politics college_chemistry
    logical_fallacies high_school_geography elementary_mathematics human_aging college_mathematics
    high_school_psychology formal_logic high_school_statistics international_law
    high_school_mathematics high_school_computer_science conceptual_physics miscellaneous
    high_school_chemistry marketing professional_law management college_physics jurisprudence
    world_religions sociology us_foreign_policy high_school_macroeconomics computer_security
    moral_scenarios moral_disputes electrical_engineering astronomy college_biology
    """.split()  # noqa: SIM905  (57 names read better as a block of words than one a line)
)


@dataclass(frozen=True)
class Dataset:
    """Where a family of public files comes from: its folder in a data folder, its download
    base URL (and the variable that moves it), its licence and origin."""

    folder: str
    url: str
    url_env: str
    licence: str
    source: str

    def base_url(self, override: str | None = None) -> str:
        """The download base URL: ``override``, else the environment variable, else the default.
        Whitespace around a value is no part of it: a value read from a file with CR LF line ends
        ends in CR, which made every URL invalid."""
        given = (override or "").strip() or os.environ.get(self.url_env, "").strip()
        return (given or self.url).rstrip("/")


@dataclass(frozen=True)
class Part:
    """Files a command needs together. ``files`` maps each file's path inside the dataset's folder
    to its path under the download base URL (they differ only where a data folder renames one)."""

    name: str
    dataset: Dataset
    description: str
    files: Mapping[str, str]


ROUTELLM_EVALS = Dataset(
    folder="routellm-evals",
    url="https://raw.githubusercontent.com/lm-sys/RouteLLM/main/routellm/evals",
    url_env="LMROUTE_DATA_URL",
    licence="Apache-2.0 (RouteLLM evaluation data); MMLU and GSM8K questions MIT, MT-Bench Apache-2.0",
    source="https://github.com/lm-sys/RouteLLM (routellm/evals)",
)
ARENA_HARD = Dataset(
    folder="arena-hard",
    url="https://raw.githubusercontent.com/lmarena/arena-hard-auto/main/data/arena-hard-v0.1",
    url_env="LMROUTE_PROMPTS_URL",
    licence="Apache-2.0 (arena-hard-auto)",
    source="https://github.com/lmarena/arena-hard-auto (data/arena-hard-v0.1)",
)


def _same(*paths: str) -> dict[str, str]:
    return {p: p for p in paths}


#: Every public part, by name (the names ``lmroute data pull --only`` takes).
PARTS: dict[str, Part] = {
    part.name: part
    for part in (
        Part(
            "mmlu",
            ROUTELLM_EVALS,
            "MMLU: both models' correctness on 14,042 questions in 57 subject files",
            _same(
                *(f"mmlu/responses/mmlu_{domain}.csv" for domain in MMLU_DOMAINS),
                "mmlu/contaminated_prompts.jsonl",
            ),
        ),
        Part(
            "gsm8k",
            ROUTELLM_EVALS,
            "GSM8K: both models' correctness on the 1,319 test questions",
            _same("gsm8k/gsm8k_responses.csv", "gsm8k/contaminated_prompts.jsonl"),
        ),
        Part(
            "mt-bench",
            ROUTELLM_EVALS,
            "MT-Bench: 80 questions and GPT-4's judgements of both models' answers",
            _same(
                "mt_bench/question.jsonl", "mt_bench/judgements.jsonl", "mt_bench/contaminated_prompts.jsonl"
            ),
        ),
        Part(
            "arena-hard",
            ARENA_HARD,
            "Arena-Hard v0.1: 500 real, hard Chatbot Arena prompts (lmroute calibrate's sample)",
            {"questions.jsonl": "question.jsonl"},
        ),
    )
}


def part(name: str) -> Part:
    """The public part called ``name``; ConfigError listing the known ones otherwise."""
    key = str(name).lower().replace("_", "-")
    if key not in PARTS:
        raise ConfigError(f"unknown public data {name!r}; known: {', '.join(PARTS)}")
    return PARTS[key]


def parts_named(names: Iterable[str] | None) -> list[Part]:
    """Parts by name, a dataset's folder name standing for all its parts; every part when None."""
    if names is None:
        return list(PARTS.values())
    chosen: dict[str, Part] = {}
    for name in names:
        in_folder = [p for p in PARTS.values() if p.dataset.folder == name]
        if not in_folder and str(name).lower().replace("_", "-") not in PARTS:
            # part()'s list has no folder names, which are taken here too
            known = dict.fromkeys([*PARTS, *(p.dataset.folder for p in PARTS.values())])
            raise ConfigError(f"unknown public data {name!r}; known: {', '.join(known)}")
        for p in in_folder or [part(name)]:
            chosen[p.name] = p
    return list(chosen.values())


def download_variables() -> list[str]:
    """The environment variables that move a download source (one per dataset)."""
    return sorted({p.dataset.url_env for p in PARTS.values()})


def data_folders(data_dir: str | Path | None) -> list[tuple[Path, str]]:
    """The data folders to look in, in order, each with how it was given: ``data_dir`` (as
    ``--data-dir``), then ``$LMROUTE_DATA_DIR``. A folder that does not exist is a DataError."""
    given = [(data_dir, "--data-dir"), (os.environ.get(DATA_DIR_ENV), DATA_DIR_ENV)]
    folders = []
    for value, how in given:
        if value is None or str(value) == "":
            continue
        path = Path(value).expanduser()
        if not path.is_dir():
            what = "is not a folder" if path.exists() else "does not exist"
            raise DataError(f"data directory {path} ({how}) {what}")
        folders.append((path, how))
    return folders


def find_data_file(path: Path, data_dir: str | Path | None) -> tuple[Path | None, list[Path]]:
    """``path`` if it exists, else a relative one under the first data folder (:func:`data_folders`)
    that holds it (None: none does); with the data folders looked in, for the caller's message."""
    if path.exists() or path.is_absolute():
        return (path if path.exists() else None), []
    folders = [root for root, _ in data_folders(data_dir)]
    return next((root / path for root in folders if (root / path).exists()), None), folders


def locate(name: str, *, data_dir: str | Path | None = None, download_url: str | None = None) -> Path:
    """The folder holding part ``name``'s files (its dataset's folder), found by the module's rule;
    files missing from the user cache are downloaded there first. See the module docstring."""
    p = part(name)
    found = _in_data_folders(p, data_dir)
    if found is not None:
        return found
    from lmroute._paths import cache_dir
    from lmroute.data.download import fetch_files

    folder = cache_dir() / p.dataset.folder
    base = p.dataset.base_url(download_url)
    files = {f: f"{base}/{remote}" for f, remote in p.files.items()}
    try:
        fetch_files(files, folder, what=f"{p.name} data from {base}", hint=_hint(p))
    except WriteError as exc:  # a read-only home, say: why lmroute writes there, and where else
        raise WriteError(
            f"{exc} (the user cache, where public data is downloaded): set LMROUTE_CACHE_DIR to a "
            f"folder that can be written, or pass --data-dir DIR or set {DATA_DIR_ENV}=DIR, DIR "
            f"holding {p.dataset.folder}/ (`lmroute data pull --only {p.name} --to DIR` makes one)"
        ) from None
    return folder


@contextmanager
def reading(folder: Path) -> Iterator[None]:
    """Read the files of ``folder``, a folder :func:`locate` returned: a DataError met in the user
    cache says that deleting the damaged file downloads it afresh. A download is never checked
    again once kept (an older lmroute kept a proxy's web page), so every run failed on it."""
    try:
        yield
    except DataError as exc:
        from lmroute._paths import cache_dir

        if not folder.is_relative_to(cache_dir()):
            raise
        raise DataError(
            f"{exc} (a file of the user cache {folder}: delete it and the next run downloads it again)"
        ) from exc


def find(name: str, *, data_dir: str | Path | None = None) -> Path | None:
    """:func:`locate` without the download: the folder of part ``name`` if a data folder or the
    user cache holds all its files, else None (for what only uses the data when it is there)."""
    p = part(name)
    found = _in_data_folders(p, data_dir)
    if found is not None:
        return found
    from lmroute._paths import cache_dir

    folder = cache_dir() / p.dataset.folder
    return folder if all((folder / f).is_file() for f in p.files) else None


def _in_data_folders(p: Part, data_dir: str | Path | None) -> Path | None:
    for root, how in data_folders(data_dir):
        folder = _dataset_folder(root, p)
        if folder is not None:
            missing = [f for f in p.files if not (folder / f).is_file()]
            if missing:
                raise DataError(
                    f"{folder / missing[0]} does not exist ({p.name} data in {how} {root} is incomplete: "
                    f"{len(missing)} of {len(p.files)} files missing); {_pull_hint(p, root, folder)}"
                )
            return folder
    return None


def _pull_hint(p: Part, root: Path, folder: Path) -> str:
    """How to fetch part ``p``'s files missing from ``folder`` of data folder ``root``. A pull into
    DIR writes DIR/<dataset folder>/: into a copy of the dataset's folder it would add one inside,
    which hides from every later run the parts the copy holds."""
    pull = f"`lmroute data pull --only {p.name} --to {{}}`"
    if folder != root:
        return f"{pull.format(root)} fetches them on a connected machine"
    if root.name == p.dataset.folder:
        return f"{pull.format(root.parent)} fetches them on a connected machine"
    return (
        f"{root} holds {p.dataset.folder}/'s files itself: copy them into it from "
        f"DIR/{p.dataset.folder}/ after {pull.format('DIR')} on a connected machine"
    )


def _dataset_folder(root: Path, p: Part) -> Path | None:
    """``root/<folder>``, or ``root`` itself when it is a copy of the dataset's folder (it holds the
    first directory or file of one of the dataset's parts), or None."""
    if (root / p.dataset.folder).is_dir():
        return root / p.dataset.folder
    tops = {f.split("/")[0] for q in PARTS.values() if q.dataset == p.dataset for f in q.files}
    return root if any((root / top).exists() for top in tops) else None


def _hint(p: Part) -> str:
    return (
        f"Offline? Pass --data-dir DIR or set {DATA_DIR_ENV}=DIR, DIR holding "
        f"{p.dataset.folder}/{next(iter(p.files))} (`lmroute data pull --only {p.name} --to DIR` "
        "on a connected machine makes one)"
    )
