"""``lmroute serve``: serve routers behind an OpenAI-compatible API."""

from __future__ import annotations

import argparse

from lmroute.cli._options import Subparsers, add_data_dir_option

#: ``lmroute.data.conversations.ROUTE_ON`` (the parser imports no library code; a test keeps
#: the two equal).
ROUTE_ON = ("last_user", "last_user_with_system", "user_turns", "conversation_without_system", "conversation")


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """The ``serve`` command and its options (each one overrides the same key of ``--config``)."""
    p = subparsers.add_parser("serve", help="serve routers behind an OpenAI-compatible API")
    p.add_argument(
        "--config", help="YAML file: strong:, weak:, routers:, fallback:, server: ... (flags override it)"
    )
    p.add_argument(
        "--routers",
        nargs="+",
        action="extend",
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
        choices=ROUTE_ON,
        help="what of a conversation the router scores (default last_user; see docs/serving.md)",
    )
    p.add_argument(
        "--on-router-error",
        choices=("strong", "weak", "error"),
        help="a router that raises: send to this model (default strong) or 503",
    )
    p.add_argument(
        "--timeout", type=float, help="seconds to wait for an upstream, each of models: too (default 60)"
    )
    p.add_argument(
        "--max-retries", type=int, help="retries of a failed upstream call, each of models: too (default 2)"
    )
    p.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="port (default 6060)")
    p.add_argument(
        "--workers", type=int, help="server processes sharing the port, each with its routers (default 1)"
    )
    p.add_argument(
        "--ray",
        action="store_true",
        help="serve on Ray Serve (replicas, autoscaling: --ray-config; needs pip install 'lmroute[ray]')",
    )
    p.add_argument("--ray-config", metavar="FILE", help="YAML: address, ingress: and scorer: replicas")
    p.add_argument("--ray-address", help="the Ray cluster (e.g. auto, 10.0.0.5:6379; default: a local one)")
    p.add_argument(
        "--api-key",
        action="append",
        metavar="KEY",
        help="accepted bearer key, repeatable (default: $LMROUTE_API_KEYS, comma-separated; "
        "none: no authentication)",
    )
    p.add_argument("--max-request-bytes", type=int, help="larger requests get 413 (default 1 MiB)")
    p.add_argument("--max-messages", type=int, help="requests with more messages get 400 (default 2048)")
    p.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        help="log level of the server and lmroute (default: the config's server.log_level, else info; "
        "info and debug log each request)",
    )
    p.add_argument(
        "--ui",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="serve the web console at /ui (default: on; --no-ui turns it off)",
    )
    p.add_argument(
        "--calibration-prompts",
        metavar="FILE",
        help="prompts on which the configured thresholds are checked at start-up (default: the "
        "Arena-Hard sample, if the data folder or the user cache has it)",
    )
    add_data_dir_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until stopped. Flags map onto the config file's keys; flags not given are None, which
    :func:`~lmroute.serving.config.build_config` ignores, so the file's value (or the default) holds."""
    from lmroute import _extras
    from lmroute.serving.app import serve
    from lmroute.serving.config import build_config

    # The upstream clients are made as the server starts, inside uvicorn, which would print a
    # missing package as a traceback: check for them first.
    for module in ("aiohttp",):
        if not _extras.available(module):
            raise _extras.missing(module, purpose="lmroute serve")
    overrides = {
        "strong": {
            "base_url": args.strong_base_url,
            "model": args.strong_model,
            "api_key_env": args.strong_api_key_env,
        },
        "weak": {
            "base_url": args.weak_base_url,
            "model": args.weak_model,
            "api_key_env": args.weak_api_key_env,
        },
        "routers": args.routers,
        "fallback": args.fallback,
        "route_on": args.route_on,
        "on_router_error": args.on_router_error,
        "calibration_prompts": args.calibration_prompts,
        "server": {
            "host": args.host,
            "port": args.port,
            "workers": args.workers,
            "max_request_bytes": args.max_request_bytes,
            "max_messages": args.max_messages,
            "log_level": args.log_level,
            "ui": args.ui,
        },
    }
    upstream = {"timeout": args.timeout, "max_retries": args.max_retries}
    config = build_config(args.config, overrides=overrides, api_keys=args.api_key, upstream=upstream)
    if not (args.ray or args.ray_config or args.ray_address):
        serve(config, data_dir=args.data_dir)
        return 0
    from lmroute.cluster.config import load_ray_config

    ray_config = load_ray_config(args.ray_config, address=args.ray_address)
    if not _extras.available("ray"):
        raise _extras.missing("ray", purpose="lmroute serve --ray")
    from lmroute.cluster.serve import run_serve

    run_serve(config, ray_config, data_dir=args.data_dir)
    return 0
