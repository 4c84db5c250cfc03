"""Fetch public data (RouteLLM's evaluation files, Arena-Hard prompts) into the user cache."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from lmroute._files import write_atomic
from lmroute.exceptions import DownloadError

#: Where the RouteLLM repository keeps the evaluation files that lmroute reads.
ROUTELLM_EVALS_URL = "https://raw.githubusercontent.com/lm-sys/RouteLLM/main/routellm/evals"

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

#: Files of the evaluation data, relative to the RouteLLM ``evals`` folder.
EVAL_FILES = (
    *(f"mmlu/responses/mmlu_{domain}.csv" for domain in MMLU_DOMAINS),
    "mmlu/contaminated_prompts.jsonl",
    "gsm8k/gsm8k_responses.csv",
    "gsm8k/contaminated_prompts.jsonl",
    "mt_bench/question.jsonl",
    "mt_bench/judgements.jsonl",
    "mt_bench/contaminated_prompts.jsonl",
)

_COMPLETE = ".complete"


def fetch_files(base_url: str, files: Iterable[str], dest: Path, *, what: str, timeout: float = 60.0) -> Path:
    """Download ``base_url/<file>`` for each file into ``dest`` unless a finished copy is there.

    Files are written atomically and a marker is written last, so an interrupted download is
    resumed rather than trusted.
    """
    dest = Path(dest)
    if (dest / _COMPLETE).is_file():
        return dest
    files = list(files)
    print(
        f"lmroute: downloading {what} ({len(files)} files) from {base_url} into {dest}",
        file=sys.stderr,
    )
    from tqdm import tqdm

    for name in tqdm(files, desc=f"downloading {what}", unit="file", file=sys.stderr):
        target = dest / name
        if target.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        url = f"{base_url.rstrip('/')}/{name}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data = response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DownloadError(
                f"could not download {url}: {exc}. Pass --data-dir with a local copy of the data "
                "(see the README) if this machine is offline."
            ) from exc
        write_atomic(target, data)
    (dest / _COMPLETE).write_text("ok\n")
    return dest
