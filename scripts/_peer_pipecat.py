"""The peer for scripts/bench_peer.py: a Pipecat 1.14 phone bot on our model files, with a fixed reply.

Runs in its own venv (pipecat-ai[silero,whisper,websocket,piper]==1.14.0, made by bench_peer.py), never in
the project's: it imports Pipecat and nothing of voicebot. One FastAPI app serves Twilio Media Streams
("Media Streams - WebSocket Messages") at /twilio/stream, each call a Pipecat pipeline as Pipecat's own
Twilio examples build it:

    transport.input() → VADProcessor(Silero) → WhisperSTTService → user aggregator (turn strategies)
        → FixedReply (in place of the LLM) → PiperTTSService → transport.output() → assistant aggregator

with `TwilioFrameSerializer(auto_hang_up=False)` (no Twilio credentials), 16 kHz in (Whisper and smart-turn
read 16 kHz) and 8 kHz out. The same files as our bot: the faster-whisper base int8 directory of the voicebot
cache (`--whisper`), the Silero VAD ONNX Pipecat ships (byte-identical to the `silero-vad` package's, which
voicebot loads), the Piper joe voice (`--voice`). Loaded once per process, as ours are: the Whisper model
is shared by every call's STT service and the Piper voice file is read once.

`--turn timeout`: Pipecat's VAD defaults (stop_secs 0.2) and `SpeechTimeoutUserTurnStopStrategy()` (0.6 s
after the VAD's stop, and a transcript). `--turn smart-turn`: `TurnAnalyzerUserTurnStopStrategy` with
`LocalSmartTurnAnalyzerV3` (the v3.2 ONNX inside the wheel), which is what `UserTurnStrategies()` picks in
1.14 when none is named. Pipecat's Whisper service keeps its own decode settings (faster-whisper's
`transcribe`: 30 s window, beam 5).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import piper
import uvicorn
from fastapi import FastAPI, WebSocket
from faster_whisper import WhisperModel
from loguru import logger
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import Frame, LLMContextFrame, TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.services.piper.tts import PiperTTSService
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport
from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy, TurnAnalyzerUserTurnStopStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies

GREETING = "Thanks for calling Acme Shop. How can I help?"
REPLY = "Thanks. Let me look into that for you."


class FixedReply(FrameProcessor):
    """The LLM's place: each finished user turn (a non-speculative context frame) is answered with `REPLY`."""

    def __init__(self) -> None:
        super().__init__()
        self.turns = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            if not frame.speculation:
                self.turns += 1
                await self.push_frame(TTSSpeakFrame(REPLY))
            return
        await self.push_frame(frame, direction)


class SharedWhisper(WhisperSTTService):
    """Pipecat's Whisper service on one model loaded for the process (its `_load` would load one per call)."""

    model: WhisperModel | None = None

    def _load(self) -> None:
        self._model = SharedWhisper.model


def strategies(turn: str) -> UserTurnStrategies:
    if turn == "smart-turn":
        return UserTurnStrategies(
            stop=[TurnAnalyzerUserTurnStopStrategy(turn_analyzer=LocalSmartTurnAnalyzerV3())]
        )
    return UserTurnStrategies(stop=[SpeechTimeoutUserTurnStopStrategy()])


def make_app(args: argparse.Namespace) -> FastAPI:
    SharedWhisper.model = WhisperModel(str(args.whisper), device="cpu", compute_type="int8")
    voice = Path(args.voice)
    piper.PiperVoice.load = functools.cache(piper.PiperVoice.load)  # type: ignore[method-assign]
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.websocket("/twilio/stream")
    async def stream(websocket: WebSocket) -> None:
        await websocket.accept()
        _, call = await parse_telephony_websocket(websocket)
        serializer = TwilioFrameSerializer(
            call["stream_id"], call["call_id"], params=TwilioFrameSerializer.InputParams(auto_hang_up=False)
        )
        transport = FastAPIWebsocketTransport(
            websocket,
            FastAPIWebsocketParams(audio_in_enabled=True, audio_out_enabled=True, serializer=serializer),
        )
        stt = SharedWhisper(
            device="cpu", compute_type="int8", settings=SharedWhisper.Settings(model=str(args.whisper))
        )
        tts = PiperTTSService(settings=PiperTTSService.Settings(voice=voice.stem), download_dir=voice.parent)
        pair = LLMContextAggregatorPair(
            LLMContext(), user_params=LLMUserAggregatorParams(user_turn_strategies=strategies(args.turn))
        )
        pipeline = Pipeline(
            [
                transport.input(),
                VADProcessor(vad_analyzer=SileroVADAnalyzer()),
                stt,
                pair.user(),
                FixedReply(),
                tts,
                transport.output(),
                pair.assistant(),
            ]
        )
        task = PipelineTask(
            pipeline, params=PipelineParams(audio_in_sample_rate=16_000, audio_out_sample_rate=8_000)
        )

        @transport.event_handler("on_client_connected")
        async def greet(_transport: object, _client: object) -> None:
            await task.queue_frames([TTSSpeakFrame(GREETING)])

        @transport.event_handler("on_client_disconnected")
        async def gone(_transport: object, _client: object) -> None:
            await task.cancel()

        await PipelineRunner(handle_sigint=False).run(task)

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--turn", choices=["timeout", "smart-turn"], default="timeout")
    ap.add_argument("--whisper", type=Path, required=True, help="faster-whisper model directory (ours)")
    ap.add_argument("--voice", type=Path, required=True, help="Piper .onnx voice (its .onnx.json beside it)")
    args = ap.parse_args()
    logger.remove()  # Pipecat logs every frame event at DEBUG: not what a deployed bot spends its CPU on
    logger.add(sys.stderr, level="INFO")
    uvicorn.run(make_app(args), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
