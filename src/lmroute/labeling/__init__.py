"""``lmroute label``: collect in-domain responses from two or more models and turn them into
training data, labelled by an LLM judge or graded against reference answers.

The RouteLLM paper's central lesson is that routers improve when their training data resembles
the traffic; this package makes collecting such data one command.
"""

from lmroute.labeling.extract import GRADERS, extract_choice, extract_number, grade
from lmroute.labeling.judge import JUDGE_MODES, load_template, parse_pairwise, parse_score
from lmroute.labeling.runner import LabelItem, LabelJob, LabelResult, alabel, label, plan_labeling, read_items
from lmroute.labeling.upstream import ChatResult, LabelModel, UpstreamCaller, parse_model_spec

__all__ = [
    "GRADERS",
    "JUDGE_MODES",
    "ChatResult",
    "LabelItem",
    "LabelJob",
    "LabelModel",
    "LabelResult",
    "UpstreamCaller",
    "alabel",
    "extract_choice",
    "extract_number",
    "grade",
    "label",
    "load_template",
    "parse_model_spec",
    "parse_pairwise",
    "parse_score",
    "plan_labeling",
    "read_items",
]
