"""Command line: ``python -m inference serve|train-demo|eval|golden|info|verify``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

from inference.protocol import FAULT_INJECTION_FLAG, PRECISIONS, ConfigError, add_flags, config_from_flags

DEMO_MODEL = Path(__file__).resolve().parent / "demo" / "moe-demo-v1"


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the worker's HTTP API")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--model", default=None, help=f"checkpoint directory (default: the demo model {DEMO_MODEL.name})")
    p.add_argument("--model-id", default=None, help="id clients use in 'model' (default: the directory name)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--control-token", default=None, help="bearer token of /control (env WORKER_CONTROL_TOKEN)")
    p.add_argument("--api-key", default=None, help="bearer key required by /v1 (env WORKER_API_KEY)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument(FAULT_INJECTION_FLAG, action="store_true", help="enable POST /control/faults (tests only)")
    add_flags(p)  # every setting of the worker contract (inference/protocol.py), with its bounds and default


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    t = sub.add_parser("train-demo", help="train the bundled demo model")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=str(DEMO_MODEL))
    t.add_argument("--steps", type=int, default=None, help="training steps (default: TrainSettings.steps)")
    e = sub.add_parser("eval", help="held-out perplexity (and golden set) of a checkpoint per precision")
    e.add_argument("--model", default=str(DEMO_MODEL))
    e.add_argument("--precision", choices=PRECISIONS, action="append", help="repeatable (default: fp32)")
    g = sub.add_parser("golden", help="(re)write golden.jsonl of a checkpoint")
    g.add_argument("--model", default=str(DEMO_MODEL))
    for name, text in (
        ("info", "config, sha256 and parameter count (no torch)"),
        ("verify", "check sha256 and shapes"),
    ):
        sub.add_parser(name, help=text).add_argument("path", nargs="?", default=str(DEMO_MODEL))
    return parser


def serve(args: argparse.Namespace) -> int:
    """Start the worker; the demo model loads in the background while the API already answers."""
    # OpenMP worker threads spin-wait between torch ops by default; on a small CPU box that starves the HTTP event
    # loop (measured: p50 latency of a 32-token request 1.2-2.6 s instead of ~0.2 s on 2 cores). Must be set
    # before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        startup, config = config_from_flags(args)
    except ConfigError as exc:
        print(f"invalid option: {exc}", file=sys.stderr)
        return 2
    if startup.torch_threads:
        os.environ["OMP_NUM_THREADS"] = str(startup.torch_threads)
    import uvicorn

    from inference.engine import Engine
    from inference.server import StartupLoad, create_app

    token = args.control_token or os.environ.get("WORKER_CONTROL_TOKEN")
    if not token:
        token = secrets.token_urlsafe(32)
        print(f"control token (generated, shown once): {token}", flush=True)
    api_key = args.api_key or os.environ.get("WORKER_API_KEY") or None
    engine = Engine(config)
    load = StartupLoad(args.model or str(DEMO_MODEL), startup.precision, args.device, args.model_id)
    faults = None
    if args.enable_fault_injection:
        from inference.faults import Faults

        faults = Faults(engine.active_device)
    app = create_app(engine, token, api_key, load, faults)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal; exit 0 after that clean shutdown.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=10)
    return 0


def _exit_cleanly(_sig: int, _frame: object) -> None:
    sys.exit(0)


def train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from inference.golden import write_golden
    from inference.train import TrainSettings, train_demo

    settings = TrainSettings(seed=args.seed)
    if args.steps is not None:
        settings = replace(settings, steps=args.steps)
    summary = train_demo(args.out, settings, report=lambda line: print(line, flush=True))
    for record in write_golden(args.out):
        print(f"golden: {record['prompt']!r} -> {record['output']!r}", flush=True)
    print(json.dumps(summary, indent=2))
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from inference.corpus import heldout_texts
    from inference.engine import Engine
    from inference.golden import check_golden, read_golden

    texts, golden = heldout_texts(), read_golden(args.model)
    for precision in args.precision or ["fp32"]:
        engine = Engine().start()
        try:
            info = engine.load(args.model, precision, "auto")
            ppl = engine.perplexity(texts)
            gold = check_golden(engine, golden) if golden else None
        finally:
            engine.stop()
        line = {"precision": precision, "weight_bytes": info["weight_bytes"], **ppl}
        if gold is not None:
            line["golden_matches"] = f"{gold['matches']}/{gold['total']}"
        print(json.dumps(line))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        return serve(args)
    if args.command == "train-demo":
        return train(args)
    if args.command == "eval":
        return evaluate(args)
    if args.command == "golden":
        from inference.golden import write_golden

        write_golden(args.model)
        return 0
    if args.command == "info":
        from inference.artifacts import artifact_digest, count_parameters, read_model_config

        info = {**read_model_config(args.path), "sha256": artifact_digest(args.path)}
        print(json.dumps({**info, "parameters": count_parameters(args.path)}, indent=2))
        return 0
    from inference.checkpoint import load_checkpoint
    from inference.errors import CheckpointError

    try:
        load_checkpoint(args.path)
    except CheckpointError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.path}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
