"""``lmroute label``: collect in-domain responses from two or more models and turn them into
training data, labelled by an LLM judge or graded against reference answers.

The RouteLLM paper's central lesson is that routers improve when their training data resembles
the traffic; this package makes collecting such data one command.

Modules, in the order a run uses them::

    items.py      LabelItem and read_items: the prompts, from a text, JSONL or CSV file
    upstream.py   LabelModel (an OpenAI-compatible endpoint) and the caller that calls it
    job.py        LabelJob: items, models, mode and request defaults; the requests of its calls
    plan.py       plan_labeling: the dry run (calls and tokens still to spend)
    limits.py     RunLimits: concurrency, rate, retries, token budget, failure limit; CallGate
    run.py        alabel/label: the run loop (stored calls reused, new ones made and stored)
    store.py      CallStore: finished calls, one JSONL line each, so a rerun resumes
    judge.py      judge templates and verdict parsing;  extract.py: golden graders
    outputs.py    battles, scores and the summary written at the end of a run
"""

from lmroute.labeling.extract import GRADERS, extract_choice, extract_number, grade
from lmroute.labeling.items import LabelItem, read_items
from lmroute.labeling.job import LabelJob
from lmroute.labeling.judge import JUDGE_MODES, load_template, parse_pairwise, parse_score
from lmroute.labeling.limits import RunLimits
from lmroute.labeling.outputs import LabelResult, format_summary
from lmroute.labeling.plan import Plan, plan_labeling
from lmroute.labeling.run import alabel, label
from lmroute.labeling.upstream import ChatResult, LabelModel, UpstreamCaller, parse_model_spec

__all__ = [
    "GRADERS",
    "JUDGE_MODES",
    "ChatResult",
    "LabelItem",
    "LabelJob",
    "LabelModel",
    "LabelResult",
    "Plan",
    "RunLimits",
    "UpstreamCaller",
    "alabel",
    "extract_choice",
    "extract_number",
    "format_summary",
    "grade",
    "label",
    "load_template",
    "parse_model_spec",
    "parse_pairwise",
    "parse_score",
    "plan_labeling",
    "read_items",
]
