"""The ``lmroute`` command line: parses arguments, calls the library, prints results."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lmroute.exceptions import LmrouteError


def _data_dir(args: argparse.Namespace) -> str | None:
    return args.data_dir or os.environ.get("LMROUTE_DATA_DIR") or None


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        help="folder with routellm-evals/ (default: $LMROUTE_DATA_DIR, "
        "else the public files are downloaded into the user cache)",
    )
    p.add_argument(
        "--data-url",
        default=os.environ.get("LMROUTE_DATA_URL"),
        help="where to download the evaluation files from (default: RouteLLM's GitHub)",
    )


def _load_routers(specs: Sequence[str]):
    from lmroute.registry import load_router

    routers, names = [], []
    for spec in specs:
        router = load_router(spec)
        routers.append(router)
        names.append(spec if Path(spec).is_dir() else router.name)
    return routers, names


def cmd_eval(args: argparse.Namespace) -> int:
    from lmroute.data.benchmarks import load_benchmark
    from lmroute.evaluation.evaluator import evaluate
    from lmroute.evaluation.report import format_table

    benchmark = load_benchmark(
        args.benchmark,
        data_dir=_data_dir(args),
        strong_model=args.strong_model,
        weak_model=args.weak_model,
        download_url=args.data_url,
    )
    routers, names = _load_routers(args.routers)
    evaluation = evaluate(
        routers,
        benchmark,
        protocol=args.protocol,
        threshold=args.threshold,
        progress=not args.quiet,
        names=names,
        oracle=not args.no_oracle,
    )
    print(format_table(evaluation))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(evaluation.to_dict(), indent=2) + "\n", "utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        from lmroute.evaluation.plots import plot_curves

        print(f"wrote {plot_curves(evaluation, args.plot)}", file=sys.stderr)
    if args.save_scores:
        from lmroute.data.prompts import write_jsonl

        records = (
            {
                "id": benchmark.ids[i],
                "prompt": prompt,
                **{r.router: float(r.scores[i]) for r in evaluation.results if r.scores is not None},
            }
            for i, prompt in enumerate(benchmark.prompts)
        )
        print(f"wrote {write_jsonl(args.save_scores, records)}", file=sys.stderr)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from lmroute.data.prompts import read_prompts, write_jsonl
    from lmroute.evaluation.evaluator import score_prompts
    from lmroute.registry import load_router

    prompts = read_prompts(args.input)
    router = load_router(args.router)
    scores = score_prompts(router, prompts, progress=not args.quiet)
    records = ({"prompt": p, "score": float(s)} for p, s in zip(prompts, scores, strict=True))
    if args.output in (None, "-"):
        for record in records:
            print(json.dumps(record, ensure_ascii=False))
    else:
        write_jsonl(args.output, records)
        print(f"scored {len(prompts)} prompts with {router.name}: wrote {args.output}", file=sys.stderr)
    return 0


def _parse_options(pairs: Sequence[str] | None) -> dict:
    from lmroute._yaml import load_yaml_text
    from lmroute.exceptions import ConfigError

    options = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {pair!r}")
        options[key.replace("-", "_")] = load_yaml_text(value, what=f"--set {pair!r}")
    return options


def cmd_train(args: argparse.Namespace) -> int:
    from lmroute.workflows.train import train_router

    router = train_router(
        args.router,
        args.data,
        out=args.out,
        data_dir=_data_dir(args),
        options=_parse_options(args.set),
        exclude_benchmarks=args.exclude_benchmark,
        decontaminate=args.decontaminate,
        progress=not args.quiet,
    )
    print(f"trained {router.name}: wrote {args.out}", file=sys.stderr)
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from lmroute.workflows.experiment import load_experiment_config, run_experiment, write_experiment

    config = load_experiment_config(args.config)
    result = run_experiment(config, data_dir=_data_dir(args), progress=not args.quiet)
    for path in write_experiment(result, args.out):
        print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    from lmroute.labeling.judge import load_template
    from lmroute.labeling.runner import LabelJob, format_summary, label, plan_labeling, read_items
    from lmroute.labeling.upstream import parse_model_spec, read_upstreams

    upstreams = read_upstreams(args.upstreams) if args.upstreams else {}
    params = {"temperature": args.temperature, "max_tokens": args.max_tokens}
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
        judge_mode=args.judge_mode,
        template=load_template(args.judge_mode, args.judge_template) if args.mode == "judge" else None,
        grader=args.grader,
        prompt_template=args.prompt_template,
        system_prompt=args.system,
        params=params,
        judge_params={"temperature": 0.0, "max_tokens": args.judge_max_tokens},
    )
    if args.dry_run:
        print(plan_labeling(job, args.out).format())
        return 0
    result = label(
        job,
        args.out,
        concurrency=args.concurrency,
        rate=args.rate,
        retries=args.retries,
        budget_tokens=args.budget_tokens,
        max_failures=args.max_failures,
        progress=not args.quiet,
    )
    print(format_summary(result.summary))
    for path in result.files:
        print(f"wrote {path}", file=sys.stderr)
    return 0 if result.complete else 3


def cmd_data(args: argparse.Namespace) -> int:
    from lmroute.data.battles import battle_records
    from lmroute.data.benchmarks import PUBLIC_BENCHMARKS
    from lmroute.data.decontaminate import DEFAULT_THRESHOLD
    from lmroute.data.prompts import write_jsonl
    from lmroute.data.sources import prepare_battles

    against = list(PUBLIC_BENCHMARKS) if args.decontaminate else []
    embedder = None
    if (args.exclude_benchmark or against) and not args.exact_only:
        from lmroute.embeddings import get_embedder

        embedder = get_embedder(args.embedder)
    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    if args.exact_only:
        threshold = None
    battles, report = prepare_battles(
        args.sources,
        data_dir=_data_dir(args),
        exclude_benchmarks=args.exclude_benchmark,
        decontaminate_against=against,
        embedder=embedder,
        threshold=threshold,
        min_model_battles=args.min_model_battles,
        aliases=dict(_parse_aliases(args.alias)),
    )
    print(report.describe(all_models=True))
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(report.to_dict(), indent=2) + "\n", "utf-8")
        print(f"wrote {args.report}", file=sys.stderr)
    if args.out:
        print(
            f"wrote {len(battles):,} battles to {write_jsonl(args.out, battle_records(battles))}",
            file=sys.stderr,
        )
    return 0


def _parse_aliases(pairs: Sequence[str] | None):
    from lmroute.exceptions import ConfigError

    for pair in pairs or ():
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ConfigError(f"--alias expects OLD=NEW, got {pair!r}")
        yield old.strip(), new.strip()


def cmd_serve(args: argparse.Namespace) -> int:
    from lmroute.serving.app import serve
    from lmroute.serving.config import build_config

    upstream = {"timeout": args.timeout, "max_retries": args.max_retries}
    overrides = {
        "strong": {
            "base_url": args.strong_base_url,
            "model": args.strong_model,
            "api_key_env": args.strong_api_key_env,
            **upstream,
        },
        "weak": {
            "base_url": args.weak_base_url,
            "model": args.weak_model,
            "api_key_env": args.weak_api_key_env,
            **upstream,
        },
        "routers": args.routers,
        "fallback": args.fallback,
        "route_on": args.route_on,
        "on_router_error": args.on_router_error,
        "server": {
            "host": args.host,
            "port": args.port,
            "max_request_bytes": args.max_request_bytes,
            "max_messages": args.max_messages,
            "log_level": args.log_level,
        },
    }
    serve(build_config(args.config, overrides=overrides, api_keys=args.api_key))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from lmroute.calibration import arena_hard_prompts, calibrate, format_calibration
    from lmroute.data.prompts import read_prompts
    from lmroute.registry import load_router

    router = load_router(args.router)
    if args.prompts:
        prompts, source = read_prompts(args.prompts), args.prompts
    else:
        prompts, source = arena_hard_prompts(url=args.prompts_url), "the public Arena-Hard v0.1 sample"
    name = router.name if Path(args.router).is_dir() else args.router
    result = calibrate(router, prompts, args.strong_pct, thresholds=args.thresholds, name=name)
    print(format_calibration(result, source=source))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2) + "\n", "utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from lmroute.serving.chat import run_chat

    if args.config:
        from lmroute.client import Controller

        with Controller.from_config(args.config) as client:
            return run_chat(client, model=args.model, system=args.system)
    from openai import OpenAI

    key = os.environ.get(args.api_key_env) or "no-key"
    client = OpenAI(base_url=args.url.rstrip("/") + "/v1", api_key=key)
    with client:
        return run_chat(client, model=args.model, system=args.system)


def cmd_routers(args: argparse.Namespace) -> int:
    from lmroute.registry import router_names

    for name in router_names():
        print(name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from lmroute._version import __version__

    parser = argparse.ArgumentParser(prog="lmroute", description="Train, evaluate and serve LLM routers.")
    parser.add_argument("--version", action="version", version=f"lmroute {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("eval", help="evaluate routers on a benchmark (APGR, CPT, plots)")
    p.add_argument("--benchmark", required=True, help="mmlu, gsm8k, mt-bench, or a custom .jsonl/.csv file")
    p.add_argument(
        "--routers", nargs="+", default=["random", "length"], help="router names or saved router directories"
    )
    p.add_argument(
        "--protocol",
        choices=("paper", "exact"),
        default="paper",
        help="paper: 10 quantile bins as the reference; exact: every threshold",
    )
    p.add_argument("--strong-model", help="strong model of a custom benchmark")
    p.add_argument("--weak-model", help="weak model of a custom benchmark")
    p.add_argument(
        "--threshold", type=float, default=0.5, help="threshold for the 'strong %% @t' column (default 0.5)"
    )
    p.add_argument("--json", help="write all metrics and curve points to this JSON file")
    p.add_argument("--plot", help="write the call–performance curves to this PNG")
    p.add_argument("--save-scores", help="write each item's score to this JSONL file")
    p.add_argument("--no-oracle", action="store_true", help="leave out the oracle router")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_data_options(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("score", help="score prompts with a router")
    p.add_argument("--router", required=True, help="router name or saved router directory")
    p.add_argument("--input", required=True, help="JSONL with a 'prompt' field, or text lines")
    p.add_argument("--output", help="JSONL output file (default: standard output)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("train", help="train a router on preference data and save it")
    p.add_argument("router", help="router to train (mf, sw_ranking, bert, causal_llm, ...)")
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="SOURCE",
        help="training sources: arena:FILE battles:FILE alpaca-eval:DIR gold:mmlu gold:FILE",
    )
    p.add_argument("--out", required=True, help="directory to write the trained router to")
    p.add_argument(
        "--set",
        nargs="+",
        action="extend",
        metavar="KEY=VALUE",
        help="router options, e.g. --set epochs=20 dim=64 (repeatable)",
    )
    p.add_argument(
        "--exclude-benchmark",
        nargs="*",
        default=[],
        metavar="NAME",
        help="drop NAME's gold labels and training prompts that (nearly) duplicate NAME's",
    )
    p.add_argument(
        "--decontaminate",
        action="store_true",
        help="drop training prompts that (nearly) duplicate any public benchmark prompt",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_data_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("experiment", help="train and evaluate routers under named protocols")
    p.add_argument("config", help="experiment YAML file (see experiments/)")
    p.add_argument("--out", default="results/experiment", help="folder for results.md, .json, plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_data_options(p)
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("label", help="collect responses from models and label them (judge or golden)")
    p.add_argument(
        "--prompts",
        required=True,
        help="JSONL (prompt or question; optional id, reference or answer) or text",
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
        default="pairwise",
        help="pairwise: compare both orders, ties allowed; score: rate each 1-10",
    )
    p.add_argument("--judge-template", help="YAML judge prompt (system, user) replacing the packaged one")
    p.add_argument(
        "--grader",
        choices=("auto", "gsm8k", "number", "choice", "exact"),
        default="auto",
        help="golden mode: how answers are read (auto: by the reference's form)",
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
    p.add_argument("--judge-max-tokens", type=int, default=1024, help="judge's max_tokens (default 1024)")
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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("data", help="load, check, deduplicate and decontaminate training battles")
    p.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="arena:FILE battles:FILE alpaca-eval[:DIR] gold:mmlu|gsm8k|mt-bench gold:FILE "
        "(options after '?', e.g. gold:crux.jsonl?max_pairs=16)",
    )
    p.add_argument(
        "--exclude-benchmark",
        nargs="*",
        default=[],
        metavar="NAME",
        help="drop NAME's gold labels and training prompts that (nearly) duplicate NAME's",
    )
    p.add_argument(
        "--decontaminate",
        action="store_true",
        help="drop training prompts that (nearly) duplicate any public benchmark prompt",
    )
    p.add_argument(
        "--threshold",
        type=float,
        help="cosine similarity at or above which a prompt is a near duplicate (default 0.90 for "
        "MiniLM; see lmroute.data.decontaminate)",
    )
    p.add_argument("--exact-only", action="store_true", help="decontaminate by exact matches only")
    p.add_argument("--embedder", default="minilm", help="embedder for near duplicates (default minilm)")
    p.add_argument("--alias", nargs="*", metavar="OLD=NEW", help="rename a model in every source")
    p.add_argument(
        "--min-model-battles",
        type=int,
        default=2,
        help="drop battles of models seen in fewer battles than this (default 2)",
    )
    p.add_argument("--out", help="write the battles to this JSONL file (readable as battles:FILE)")
    p.add_argument("--report", help="write the report to this JSON file")
    _add_data_options(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("serve", help="serve routers behind an OpenAI-compatible API")
    p.add_argument(
        "--config", help="YAML file: strong:, weak:, routers:, fallback:, server: ... (flags override it)"
    )
    p.add_argument(
        "--routers",
        nargs="+",
        metavar="ROUTER",
        help="router names, saved router directories or NAME=DIRECTORY (default: mf)",
    )
    for tier in ("strong", "weak"):
        p.add_argument(f"--{tier}-base-url", help=f"OpenAI-compatible URL of the {tier} model")
        p.add_argument(f"--{tier}-model", help=f"model name sent to the {tier} endpoint")
        p.add_argument(
            f"--{tier}-api-key-env",
            metavar="VARIABLE",
            help=f"environment variable holding the {tier} endpoint's API key",
        )
    p.add_argument(
        "--fallback",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ask the other model when the routed one fails (default: on)",
    )
    p.add_argument(
        "--route-on",
        choices=("last_user", "conversation"),
        help="score the last user message (default) or the whole conversation",
    )
    p.add_argument(
        "--on-router-error",
        choices=("strong", "weak", "error"),
        help="a router that raises: send to this model (default strong) or 503",
    )
    p.add_argument("--timeout", type=float, help="seconds to wait for an upstream (default 60)")
    p.add_argument("--max-retries", type=int, help="retries of a failed upstream call (default 2)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="port (default 6060)")
    p.add_argument(
        "--api-key",
        action="append",
        metavar="KEY",
        help="accepted bearer key, repeatable (default: $LMROUTE_API_KEYS, comma-separated; "
        "none: no authentication)",
    )
    p.add_argument("--max-request-bytes", type=int, help="larger requests get 413 (default 1 MiB)")
    p.add_argument("--max-messages", type=int, help="requests with more messages get 400 (default 2048)")
    p.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("calibrate", help="the threshold that sends a share of prompts to the strong model")
    p.add_argument("--router", required=True, help="router name or saved router directory")
    p.add_argument(
        "--strong-pct",
        type=float,
        required=True,
        metavar="FRACTION",
        help="share of prompts for the strong model, as a fraction (0.5 = 50%%)",
    )
    p.add_argument(
        "--prompts",
        help="your prompts: JSONL with a 'prompt' field, or one per line "
        "(default: the public Arena-Hard sample, downloaded once)",
    )
    p.add_argument(
        "--prompts-url",
        default=os.environ.get("LMROUTE_PROMPTS_URL"),
        help="folder URL of Arena-Hard's question.jsonl (default: arena-hard-auto)",
    )
    p.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        metavar="T",
        help="thresholds to tabulate (default: those for 10%%, 20%%... 90%% strong)",
    )
    p.add_argument("--json", help="also write the result to this JSON file")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("chat", help="chat in the terminal; shows the model chosen and the score")
    p.add_argument("--model", required=True, help="router-<router>-<threshold>, e.g. router-mf-0.1159")
    p.add_argument("--url", default="http://127.0.0.1:6060", help="lmroute server (default: %(default)s)")
    p.add_argument(
        "--api-key-env",
        default="LMROUTE_API_KEY",
        metavar="VARIABLE",
        help="environment variable with the server's key (default: %(default)s)",
    )
    p.add_argument("--config", help="route in this process with a serve config instead of a server")
    p.add_argument("--system", help="system message that starts the conversation")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("routers", help="list the registered routers")
    p.set_defaults(func=cmd_routers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lmroute`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except LmrouteError as exc:
        print(f"lmroute: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lmroute: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
