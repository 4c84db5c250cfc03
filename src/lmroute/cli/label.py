"""``lmroute label``: collect responses from models and label them (an LLM judge or references)."""

from __future__ import annotations

import argparse

from lmroute.cli._options import Subparsers, add_quiet_option, add_ray_options, ray_actors
from lmroute.cli._output import check_output, wrote

#: ``lmroute label`` exits with this when prompts are left unlabelled (the token budget reached,
#: failed calls): what was done is kept in the run folder and a rerun continues it.
INCOMPLETE = 3


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``label`` command and its options."""
    p = subparsers.add_parser("label", help="collect responses from models and label them (judge or golden)")
    p.add_argument(
        "--prompts",
        required=True,
        help="JSONL or CSV (prompt or question; optional id, reference or answer) or text",
    )
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="SPEC",
        help="a model to answer (twice or more): a name in --upstreams, or "
        "name=N,base_url=URL[,model=ID,api_key_env=VAR,timeout=S]",
    )
    p.add_argument(
        "--mode",
        choices=("judge", "golden"),
        required=True,
        help="judge: an LLM judge compares responses; golden: grade by references",
    )
    p.add_argument("--out", required=True, help="run folder: responses, judgements, battles, summary")
    p.add_argument("--upstreams", help="YAML file: name -> {base_url, model, api_key_env, params}")
    p.add_argument("--judge", metavar="SPEC", help="the judge model (judge mode), as --model")
    p.add_argument(
        "--judge-mode",
        choices=("pairwise", "score"),
        help="pairwise (default): compare both orders, ties allowed; score: rate each 1-10",
    )
    p.add_argument("--judge-template", help="YAML judge prompt (system, user) replacing the packaged one")
    p.add_argument(
        "--grader",
        choices=("auto", "gsm8k", "number", "choice", "exact"),
        help="golden mode: how answers are read (default auto: by the reference's form)",
    )
    p.add_argument("--prompt-field", help="JSONL field with the prompt (default: prompt, else question)")
    p.add_argument("--reference-field", help="JSONL reference field (default: reference, else answer)")
    p.add_argument("--limit", type=int, help="label only the first N prompts")
    p.add_argument(
        "--prompt-template",
        default="{prompt}",
        help="the user message sent to the models; {prompt} is replaced",
    )
    p.add_argument("--system", help="a system message for the models")
    p.add_argument("--temperature", type=float, default=0.0, help="models' temperature (default 0)")
    p.add_argument("--max-tokens", type=int, default=1024, help="models' max_tokens (default 1024)")
    p.add_argument("--judge-max-tokens", type=int, help="judge's max_tokens (default 1024)")
    p.add_argument("--concurrency", type=int, default=8, help="calls at once (default 8)")
    p.add_argument("--rate", type=float, help="at most this many calls a second")
    p.add_argument("--retries", type=int, default=3, help="retries of a failed call (default 3)")
    p.add_argument(
        "--budget-tokens",
        type=int,
        help="stop before the run folder's calls could spend more tokens than this",
    )
    p.add_argument("--max-failures", type=int, default=10, help="stop after this many failed calls")
    p.add_argument("--dry-run", action="store_true", help="print the calls and tokens needed; call nothing")
    add_ray_options(
        p,
        ray_help="make the calls on a Ray cluster with Ray Data, the limits above holding for the whole "
        "cluster",
        actors="workers labelling",
    )
    add_quiet_option(p, text="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Plan the labelling run and print the plan (``--dry-run``), or run it and print its summary."""
    from lmroute.labeling import LabelJob, RunLimits, format_summary, label, plan_labeling, read_items
    from lmroute.labeling.judge import load_template
    from lmroute.labeling.upstream import parse_model_spec, read_upstreams

    _check_mode(args)
    check_output(args.out, folder=True)  # before any call is paid for
    actors = ray_actors(args)
    on_ray = args.ray or args.ray_address
    if on_ray and not args.dry_run:
        _check_ray()
    upstreams = read_upstreams(args.upstreams) if args.upstreams else {}
    judge_mode = args.judge_mode or "pairwise"
    job = LabelJob(
        items=tuple(
            read_items(
                args.prompts,
                prompt_field=args.prompt_field,
                reference_field=args.reference_field,
                limit=args.limit,
            )
        ),
        models=tuple(parse_model_spec(spec, upstreams) for spec in args.model),
        mode=args.mode,
        judge=parse_model_spec(args.judge, upstreams) if args.judge else None,
        judge_mode=judge_mode,
        template=load_template(judge_mode, args.judge_template) if args.mode == "judge" else None,
        grader=args.grader or "auto",
        prompt_template=args.prompt_template,
        system_prompt=args.system,
        params={"temperature": args.temperature, "max_tokens": args.max_tokens},
        judge_params={
            "temperature": 0.0,
            "max_tokens": 1024 if args.judge_max_tokens is None else args.judge_max_tokens,
        },
    )
    if args.dry_run:
        print(plan_labeling(job, args.out).format())
        return 0
    limits = RunLimits(
        concurrency=args.concurrency,
        rate=args.rate,
        retries=args.retries,
        budget_tokens=args.budget_tokens,
        max_failures=args.max_failures,
    )
    if on_ray:
        from lmroute.cluster.label import label_on_ray

        result = label_on_ray(
            job,
            args.out,
            limits=limits,
            address=args.ray_address,
            actors=actors,
            progress=not args.quiet,
        )
    else:
        result = label(job, args.out, limits=limits, progress=not args.quiet)
    print(format_summary(result.summary))
    for path in result.files:
        wrote(path)
    return 0 if result.complete else INCOMPLETE


def _check_mode(args: argparse.Namespace) -> None:
    """A ConfigError for an option of the other mode, which would be ignored (a golden run given
    --judge labelled by references, and still wanted the judge's API key)."""
    from lmroute.exceptions import ConfigError

    judge_options = {
        "--judge": args.judge,
        "--judge-mode": args.judge_mode,
        "--judge-template": args.judge_template,
        "--judge-max-tokens": args.judge_max_tokens,
    }
    golden_options = {"--grader": args.grader, "--reference-field": args.reference_field}
    other, kind = (judge_options, "judge") if args.mode == "golden" else (golden_options, "golden")
    given = [flag for flag, value in other.items() if value is not None]
    if given:
        raise ConfigError(f"{given[0]} is for --mode {kind}; this run is --mode {args.mode}")


def _check_ray() -> None:
    from lmroute import _extras

    if not _extras.available("ray"):
        raise _extras.missing("ray", purpose="lmroute label --ray")
