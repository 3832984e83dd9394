"""Every tunable of the pipeline, typed, with its default in exactly one place.

A `VoicebotConfig` is built from defaults, then an optional YAML file, then `VOICEBOT__SECTION__FIELD`
environment variables (e.g. `VOICEBOT__ASR__MODEL=tiny.en`), so deployments never edit code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class VADConfig(_Section):
    """Silero VAD + endpointing. Times are in milliseconds of audio, not wall-clock."""

    start_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="speech probability that counts as speech"
    )
    end_threshold: float = Field(
        0.35, ge=0.0, le=1.0, description="probability below which a frame is silence"
    )
    min_speech_ms: int = Field(160, ge=0, description="speech needed before speech-start fires")
    short_speech_ms: int = Field(
        128,
        ge=32,
        description="a short word (speech ending before min_speech_ms) counts from this long; it barges in "
        "only if more speech follows",
    )
    end_silence_ms: int = Field(500, ge=32, description="trailing silence that ends an utterance")
    max_utterance_ms: int = Field(20_000, ge=500, description="an utterance is force-ended at this length")
    pre_roll_ms: int = Field(
        300, ge=0, description="silence kept before speech-start (word onsets), besides any maybe-speech"
    )


class TurnConfig(_Section):
    """When a caller's turn is over, on live calls (`voicebot.asr.turnend`). Offline runs (files, tests fed
    faster than real time) keep the endpointer's fixed `vad.end_silence_ms`. Each pause below is silence
    after the caller's last word, as the VAD hears it; figures behind them: docs/benchmarks.md "turns"."""

    decide: bool = Field(
        True,
        description="end a turn by decision (transcript, listening context, audio model) instead of a fixed "
        "vad.end_silence_ms: a plain 'Yes.' is answered sooner, a number read in groups is waited for",
    )
    speculate_after_ms: int = Field(
        96,
        ge=32,
        description="pause before the speculative final decode (and the audio model) start: the decision "
        "can come no sooner than this plus one decode (~150-230 ms of Whisper base on 2 cores)",
    )
    complete_ms: int = Field(
        240,
        ge=32,
        description="pause that ends a turn that is plainly over: the yes/no or whole number the bot asked "
        "for, or a finished sentence the audio model also hears as finished (people answer in ~200 ms; "
        "under 224 ms the comma pause of 'Yes, that's right.' ended turns in bench_turns)",
    )
    text_complete_ms: int = Field(
        300,
        ge=32,
        description="a finished-sounding sentence without the audio model's agreement (model off, or it "
        "unsure): Whisper puts a full stop after many a comma pause, so this waits a little longer",
    )
    hold_ms: int = Field(
        1_500,
        ge=100,
        description="longest pause inside a turn: an incomplete number of the slot asked for, a trailing "
        "'and', 'my order number is', 'um' (people pause 0.5-1.5 s between digit groups)",
    )
    audio_model: Literal["smart-turn", "none"] = Field(
        "none",
        description="audio end-of-turn classifier heard beside the transcript: 'smart-turn' (v3.2, ~150-200 "
        "ms of one core at each candidate pause). Off by default: on our synthetic test voices it took false "
        "cuts from 15.6 to 13.8 % but over-waits from 6.2 to 13.8 % (docs/benchmarks.md 'turns')",
    )
    audio_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="audio model probability above which it hears the turn as complete"
    )
    audio_goes_on: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="below this the audio model is sure the caller goes on ('I want to track my order and…' "
        "heard as '…order in.' scored 0.02): a finished-looking transcript is held open `hold_ms`",
    )


class BargeInConfig(_Section):
    """Caller speech while the bot speaks (`voicebot.asr.bargein`): a backchannel ("mm-hmm", "okay") or a
    cough lets the bot talk on and is no turn; "wait", "no", a question or a correction stops it. Applies
    while `pipeline.barge_in` is on. Figures: docs/benchmarks.md "turns" (scripts/bench_turns.py)."""

    judge: bool = Field(
        True,
        description="while the bot speaks, a VAD speech start is tentative and the bot is cut only on the "
        "rules below; false: the old immediate barge-in, every speech start of vad.min_speech_ms cuts it",
    )
    max_backchannel_ms: int = Field(
        640,
        ge=32,
        description="voiced speech after which the bot is cut whatever was said: a caller who goes on longer "
        "wants the floor. Backchannels are short, but not always under 500 ms as the VAD counts them: "
        "Piper's 'Okay.' is 448 ms voiced, its 'I see.' 544 ms (cut at 500 in bench_turns --part bargein)",
    )
    probe_ms: int | None = Field(
        256,
        ge=32,
        description="voiced speech after which a quick decode of the clip so far looks for a stop word "
        "('wait', 'stop'), so a clear interruption cuts before max_backchannel_ms; null: no probe (one "
        "Whisper decode of a short clip per tentative utterance, ~100-200 ms of a core)",
    )
    backchannels: list[str] = Field(
        default_factory=lambda: (
            "mm hmm mhm mmhm mhmm mhn hm uh huh um ah oh aha okay ok right yeah yes yep yup sure alright all "  # noqa: SIM905
            "i see got it cool great fine good nice perfect wow".split()
        ),
        description="words a backchannel is made of (every word of it one of these, no question mark); "
        "Whisper writes 'mm-hmm' as 'Mm-hmm.', 'Mhm.' or 'MHN.', 'uh-huh' as 'Uh-huh.' (split at the hyphen)",
    )
    stop_words: list[str] = Field(
        default_factory=lambda: (
            "wait stop no nope hold hang sorry excuse pardon what but actually hello cancel wrong not "  # noqa: SIM905
            "repeat again".split()
        ),
        description="words that stop the bot wherever they are heard, even in a clip still being said "
        "('wait', 'no, that's wrong', 'hold on', 'sorry, what?', 'hello?')",
    )


class ASRConfig(_Section):
    """Whisper settings. `model` is a packaged name (base, tiny.en) or a CTranslate2 model directory."""

    backend: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    model: str = "base"
    checkpoint: Path | None = Field(
        None, description="openai-whisper .pt checkpoint (openai-whisper backend)"
    )
    compute_type: str = "int8"
    cpu_threads: int = Field(0, ge=0, description="0 = number of cores")
    language: str = "en"
    beam_size: int = Field(1, ge=1)
    slot_hypotheses: int = Field(
        3,
        ge=1,
        le=8,
        description="hypotheses kept for a slot answer (a beam that wide), for the dialogue to choose from",
    )
    temperatures: tuple[float, ...] = (0.0, 0.4, 0.8)
    initial_prompt: str | None = Field(None, description="domain context, e.g. 'Orders at Acme Shop.'")
    hotwords: list[str] = Field(default_factory=list, description="product names etc. to bias towards")
    min_window_s: float = Field(10.0, ge=1.0, le=30.0, description="shortest encoder window (latency lever)")
    window_margin_s: float = Field(1.5, ge=0.0, description="silence padding added after the audio")
    # Hallucination guards (Whisper paper §4.5 style thresholds).
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    max_repeats: int = Field(
        4, ge=2, description="an n-gram repeated this often in a row is a loop, not speech"
    )
    min_speech_ms: int = Field(
        120, ge=0, description="utterances with less VAD speech than this are not decoded"
    )
    partial_interval_ms: int = Field(600, ge=100, description="cadence of partial re-decodes while speaking")
    unclear_speech_ms: int = Field(
        600,
        ge=0,
        description="this much VAD speech that the guards reject is a noisy line (the caller is asked to say "
        "it again), not a cough",
    )


class TTSConfig(_Section):
    backend: Literal["piper", "espeak-ng", "flite"] = "piper"
    voice: Path | None = Field(None, description="Piper .onnx voice; default: the packaged joe voice")
    length_scale: float = Field(1.0, gt=0.1, le=3.0, description="> 1 speaks slower")
    variation: float = Field(
        1.0,
        ge=0.0,
        le=2.0,
        description="piper: scales the voice's trained randomness (noise_scale, noise_w); "
        "0 = the same text always gives the same audio",
    )
    threads: int = Field(0, ge=0, description="piper: onnxruntime threads per synthesis; 0 = number of cores")
    cache_size: int = Field(256, ge=0, description="synthesised prompts kept in memory")
    warm_replies: bool = Field(
        True,
        description="the gateway synthesises the domain's fixed replies (8 kHz) in the background at start, "
        "so they are cache hits on first use (~0.15 s of CPU each, up to half of cache_size)",
    )


class PipelineConfig(_Section):
    channel_rate: int = Field(16_000, description="sample rate of the caller's audio and of the bot's audio")
    frame_ms: int = Field(20, description="transport frame length")
    send_ahead_ms: float = Field(
        100.0,
        ge=0,
        le=1000,
        description="live calls: bot audio goes out this far ahead of the caller's playback, a jitter buffer "
        "on the caller's side against a late next sentence or a busy moment of the event loop; barge-in "
        "is not slowed (the transport's clear drops it)",
    )
    barge_in: bool = Field(
        True, description="caller speech over the bot cuts it (how: the `bargein` section); false: never"
    )
    workers: int = Field(0, ge=0, description="thread pool for model calls; 0 = number of cores")
    greeting: bool = True
    low_delay_upsampling: bool = Field(
        True,
        description="8 kHz callers upsampled by a 2 ms filter instead of soxr HQ (~100 ms held back): "
        "~100 ms off every turn and barge-in at equal WER (scripts/bench_phone.py)",
    )


class HoldConfig(_Section):
    """A caller kept waiting by a slow turn (an action, the back end) hears a spoken filler, then soft hold
    audio, instead of a dead line (`voicebot.stages.hold`). Both stop the moment the answer's first audio
    is ready (a filler still being said at its next pause between words, `word_end_ms`). Live calls only;
    a domain words its own filler with an optional `one_moment` response. Each stretch of quiet while the
    caller waits stays under 1.5 s: past that a silent line sounds dropped."""

    enabled: bool = Field(True, description="false: a slow turn is waited out in silence, as before")
    after_ms: int = Field(
        700,
        ge=0,
        le=1200,
        description="the brain working on a caller turn longer than this gets the filler: most turns "
        "(NLU and a quick back end) answer well within it and never hear one; with the ASR's own time "
        "before it the quiet stays under 1.5 s",
    )
    filler: str = Field(
        "One moment while I look that up.",
        min_length=1,
        description="what the bot says first (synthesised once per call rate and then cached: it costs "
        "nothing on the turn)",
    )
    word_end_ms: int = Field(
        500,
        ge=0,
        le=800,
        description="an answer ready while the filler is still being said waits for the filler's next pause "
        "between words, at most this long, so no word is chopped ('One mo—'); the packaged Piper voice "
        "pauses every 0.4-0.5 s in the default filler ('One moment | while I | look that up'); "
        "0: cut at once",
    )
    music_gap_ms: int = Field(
        500,
        ge=0,
        le=1200,
        description="quiet between the end of the filler and the hold audio, so the two do not run into "
        "each other; the hold audio thus starts a few seconds into the wait",
    )
    level_dbfs: float = Field(
        -30.0,
        ge=-50.0,
        le=-18.0,
        description="loudness (RMS) of the hold audio: about 10 dB under telephone speech (~-20 dBFS), "
        "present but never in the way",
    )


class NLUConfig(_Section):
    int8: bool = Field(True, description="int8-quantised encoder: ~2x faster, same accuracy (benchmarks.md)")
    threads: int = Field(1, ge=1, description="threads per parse; calls run in parallel on the worker pool")
    swap_check_s: float | None = Field(
        30.0,
        gt=0,
        description="a gateway with a domain looks this often for a better-scoring finished model of it (the "
        "background fine-tune, a `voicebot train` after the domain changed) and swaps it in between parses; "
        "null = never",
    )


class ServerConfig(_Section):
    """The gateway: browser `/ws`, Twilio Media Streams and Asterisk AudioSocket share these limits."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_calls: int = Field(16, ge=1, description="further calls are refused with a clear reason")
    token: str | None = Field(
        None,
        description="if set, /ws, /metrics and /twilio/voice need ?token=… (or a Bearer header) and Twilio "
        "streams a `token` <Parameter>; set it when public",
    )
    max_message_bytes: int = Field(
        65_536, ge=1024, description="largest WebSocket message or AudioSocket payload a caller may send"
    )
    max_messages_per_s: int = Field(
        200, ge=10, description="inbound messages/s a call may send (a 20 ms stream is 50); more ends it"
    )
    max_call_s: float = Field(3600.0, gt=0, description="a call is ended after this long, whatever happens")
    idle_timeout_s: float = Field(
        30.0, gt=0, description="nothing at all from the caller for this long: the line is dead, end the call"
    )
    max_calls_per_source: int = Field(
        4, ge=1, description="concurrent /ws calls from one client address (X-Forwarded-For behind a proxy)"
    )
    start_timeout_s: float = Field(
        10.0, gt=0, description="a new stream must identify its call (Twilio start, AudioSocket UUID) by then"
    )
    hangup_grace_s: float = Field(
        3.0, ge=0, description="longest wait for the bot's last words to reach the caller before hanging up"
    )
    drain_s: float = Field(30.0, ge=0, description="on shutdown, running calls get this long to finish")
    public_url: str | None = Field(
        None,
        description="public base URL (https://bot.example.com) for TwiML stream URLs and Twilio signature "
        "checks; default: the request's Host header",
    )
    twilio_auth_token: str | None = Field(
        None, description="if set, /twilio/voice requests need a valid X-Twilio-Signature instead (else 403)"
    )
    twilio_transfer_url: str | None = Field(
        None, description="if set, Twilio transfers are POSTed here as JSON {callSid, target, reason}"
    )
    genesys_api_key: str | None = Field(
        None, description="Genesys AudioConnector: the integration's API key, required as X-API-KEY"
    )
    genesys_client_secret: str | None = Field(
        None, description="Genesys AudioConnector: the client secret (base64) that signs connection requests"
    )
    audiosocket_host: str = Field(
        "127.0.0.1", description="AudioSocket has no authentication: keep it on loopback or a private network"
    )
    audiosocket_allow: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
        description="networks AudioSocket connections may come from (the protocol has no credentials)",
    )
    audiosocket_port: int | None = Field(
        8090, ge=0, le=65535, description="Asterisk AudioSocket TCP port (0 = any free port, null = off)"
    )
    records_url: str | None = Field(
        None, description="call records database, e.g. postgresql+psycopg://…; None = SQLite in cache_dir"
    )
    instance_id: str | None = Field(
        None,
        description="this gateway's name on a shared records database (a pod name); None: host-pid-random",
    )
    heartbeat_s: float = Field(
        3.0, gt=0, description="how often an instance tells the records database it is alive"
    )
    instance_lost_after_s: float = Field(
        15.0, gt=0, description="an instance silent this long is lost: its open calls are ended by the others"
    )
    memory_trim_s: float | None = Field(
        15.0,
        gt=0,
        description="every this often, freed native memory goes back to the OS (glibc "
        "malloc_trim, ~80 ms in a worker thread); null = never, and RSS keeps every past peak",
    )
    stall_warn_ms: float | None = Field(
        100.0,
        gt=0,
        description="log a warning, with the loop thread's stack, when the event loop stalls longer "
        "than this (every call's audio pauses meanwhile); null = never",
    )
    recordings_dir: Path | None = Field(
        None, description="keep each call's audio here (stereo WAV: caller left, bot right); None = none kept"
    )


class ConsoleUser(_Section):
    """A named operator of `/console`; the password is stored only as a PBKDF2 hash."""

    name: str = Field(min_length=1, max_length=64)
    password_hash: str = Field(
        description="pbkdf2_sha256$ITERATIONS$SALT$HASH (make one: python -m telephony.console.auth)"
    )
    role: Literal["viewer", "supervisor"] = Field(
        "viewer", description="viewer: reads calls; supervisor: also transfers live calls to a person"
    )


class ConsoleConfig(_Section):
    """The operator console (`/console`): who may open it, and what it does to live calls."""

    enabled: bool = True
    users: list[ConsoleUser] = Field(
        default_factory=list, description="named logins besides server.token (which logs in as supervisor)"
    )
    session_hours: float = Field(12.0, gt=0, description="a login lasts this long")
    transfer_target: str = Field("agent", description="where an operator's transfer sends a live call")
    transfer_notice: str = Field(
        "I'm putting you through to a colleague now. Please hold.",
        min_length=1,
        description="what the bot says before an operator's transfer",
    )
    live_partials: bool = Field(
        True,
        description="while a console watches, every call decodes partial transcripts (only when the model "
        "pool is idle, as for the browser page)",
    )
    listen_in: bool = Field(
        True, description="supervisors may listen to live calls in the browser (the caller's unmasked voice)"
    )
    low_confidence: float = Field(
        0.5, ge=0, le=1, description="the dashboard lists utterances whose intent confidence is below this"
    )
    max_results: int = Field(200, ge=1, le=5000, description="most calls one history search returns")
    dashboard_calls: int = Field(
        5000, ge=1, description="the dashboard reads at most this many calls of its time window"
    )
    reviews_file: Path | None = Field(
        None,
        description="where operators' reviews of turns go (JSON lines; with several domains, each "
        "domain's name is added to the file's: reviewed-NAME.jsonl); None: reviewed.jsonl in each domain's "
        "folder (the file `voicebot train` learns from), or in cache_dir without a domain",
    )
    retrain_command: list[str] | None = Field(
        None,
        description="the command 'retrain' runs (VOICEBOT_REVIEWED names the reviewed file); None: "
        "`voicebot train --domain D` (niced) when the gateway serves a domain, which trains on "
        "reviewed.jsonl beside it; either way the result is swapped in only if it scores at least as well "
        "on held-out data",
    )


class HandoffConfig(_Section):
    """The warm hand-off summary a transfer produces (`voicebot.handoff`) and where it goes besides
    `GET /calls/ID/handoff`, the call record and the phone line (`telephony.handoff`)."""

    webhook_url: str | None = Field(
        None, description="if set, each summary is POSTed here as JSON (in the background, never on a call)"
    )
    webhook_secret: str | None = Field(
        None,
        description="signs each webhook body: X-Voicebot-Signature: sha256=HEX(HMAC-SHA256(secret, body)); "
        "unset: unsigned",
    )
    webhook_timeout_s: float = Field(3.0, gt=0, description="one webhook attempt gives up after this long")
    webhook_attempts: int = Field(3, ge=1, le=10, description="tries per summary (a 5xx, 429 or no answer)")
    webhook_backoff_s: float = Field(
        1.0, ge=0, description="wait before the 2nd try; doubled before each further one"
    )
    keep: int = Field(
        1000, ge=1, description="summaries kept in memory for the line's own lookups (by provider call id)"
    )
    twilio_dial: dict[str, str] = Field(
        default_factory=dict,
        description="transfer target → what Twilio's <Dial> rings after the stream: sip:URI (the summary "
        "as X- headers), client:IDENTITY (as <Parameter>s) or a +E.164 number (no data); a target "
        "already in one of these forms needs no entry",
    )


class VoicebotConfig(_Section):
    vad: VADConfig = Field(default_factory=VADConfig)
    turn: TurnConfig = Field(default_factory=TurnConfig)
    bargein: BargeInConfig = Field(default_factory=BargeInConfig)
    asr: ASRConfig = Field(default_factory=ASRConfig)
    tts: TTSConfig = Field(default_factory=TTSConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    hold: HoldConfig = Field(default_factory=HoldConfig)
    nlu: NLUConfig = Field(default_factory=NLUConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    handoff: HandoffConfig = Field(default_factory=HandoffConfig)
    cache_dir: Path = Field(
        default_factory=lambda: Path(os.environ.get("VOICEBOT_CACHE", Path.home() / ".cache" / "voicebot"))
    )


ENV_PREFIX = "VOICEBOT__"


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value) if value else value
    return tree


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def load_config(path: Path | None = None, environ: dict[str, str] | None = None) -> VoicebotConfig:
    """Defaults < YAML file < environment. Unknown keys are errors, so typos never pass silently."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: top level must be a mapping of sections")
        data = loaded
    data = _merge(data, _env_overrides(dict(os.environ if environ is None else environ)))
    return VoicebotConfig.model_validate(data)
