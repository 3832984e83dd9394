"""`voicebot train --domain DIR`: every model a domain needs, cached by a hash of its training data.

The joint NLU model (intents, entities, sentiment, answer matching) is trained from the domain's
`nlu.yaml` (inline examples + dataset references) and `faq.yaml`, plus the operators' reviews of real calls
in `reviewed.jsonl` (voicebot/domain/reviewed.py, written by the console). The output directory name carries
a hash of everything that went in, so retraining happens exactly when the data, the reviews or the recipe
change.

Reviewed examples go to the training split only: the held-out (validation) split stays the domain's own, so
a model retrained with the reviews is scored on the same examples as the one before it, and the live swap
(voicebot/nlu/swap.py) compares like with like.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import random
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from models.bio import spans_to_bio
from models.data import Example, data_root, load_dataset, load_sentiment
from models.train_first import FirstModelConfig, FirstModelTrainer
from models.train_joint import FAQ, JointTrainConfig, JointTrainer
from voicebot.domain.nlu_spec import FAQSpec, NLUSpec, load_nlu_spec, parse_markup
from voicebot.domain.reviewed import read_reviews, reviewed_examples, reviewed_faq, reviewed_path
from voicebot.domain.yamlfile import DomainError, line_of, load_yaml
from voicebot.nlu.model import OOS

RECIPE_VERSION = "joint-3"  # bump when the recipe changes in a way that should retrain every domain
# `--quick` (the test suite's model): a seeded sample of each dataset intent (inline examples all kept), fewer
# epochs, a smaller sentiment pool and no FAQ matcher (answers then come from faq.yaml's intent mapping).
QUICK_PER_INTENT = 50
QUICK_EPOCHS = 3
QUICK_SENTIMENT = 3000
VALID_SHARE = 0.1
_DATA_FOLDERS = {"bitext": "bitext_customer_support", "goemotions": "sentiment"}  # else the name before "-"
log = logging.getLogger(__name__)


def _at(source: Path, *loc: str | int) -> str:
    """`file:line` of a location in a YAML file that already loaded once (just `file` if it has no line)."""
    line = line_of(load_yaml(source)[1], loc)
    return f"{source}:{line}" if line else str(source)


def _example(raw: str, intent: str, source: str) -> Example:
    """One marked-up example ('cancel [four five](order_id)'); ValueError if its slots do not fit words."""
    text, spans = parse_markup(raw)
    tokens, tags = spans_to_bio(text, spans)
    return Example(text=text, intent=intent, tokens=tokens, tags=tags, source=source)


def inline_examples(spec: NLUSpec, source: Path) -> list[Example]:
    out = []
    for intent, examples in spec.intents.items():
        for n, raw in enumerate(examples):
            try:
                out.append(_example(raw, intent, f"{source}:{intent}"))
            except ValueError as exc:
                where = _at(source, "intents", intent, n)
                raise DomainError(f"{where}: intents.{intent}.{n}: {exc}") from exc
    return out


def reviewed_training(domain: Path, known: list[Example]) -> list[Example]:
    """The operators' reviewed examples of the domain, for training. A review the domain's labels no longer
    fit (an intent or slot renamed since, a hand edit gone wrong) is left out with a warning, never a new
    label: the reviews teach the domain's model, they do not redefine it."""
    path = reviewed_path(domain)
    intents = {e.intent for e in known}
    slots = {t for e in known for t in e.tags or [] if t != "O"}
    out = []
    for intent, examples in reviewed_examples(read_reviews(path)).items():
        for raw in examples:
            try:
                example = _example(raw, intent, f"{path}:{intent}")
            except ValueError as exc:
                log.warning("%s: review of %s left out: %s", path, intent, exc)
                continue
            if intent not in intents or not set(example.tags or []) - {"O"} <= slots:
                log.warning("%s: review %r (%s) left out: not the domain's labels", path, raw, intent)
                continue
            out.append(example)
    return out


def reviewed_questions(domain: Path, faq: FAQSpec) -> FAQSpec:
    """faq.yaml's answers with the reviewed questions of each added (answers new to faq.yaml are a person's
    edit of faq.yaml: the console lists them in its shape)."""
    extra = {a["id"]: a["questions"] for a in reviewed_faq(read_reviews(reviewed_path(domain)))}
    answers = [
        a.model_copy(
            update={"questions": a.questions + [q for q in extra.get(a.id, []) if q not in a.questions]}
        )
        for a in faq.answers
    ]
    return FAQSpec(answers=answers)


def _cap(examples: list[Example], per_intent: int, rng: random.Random) -> list[Example]:
    """At most `per_intent` examples of each intent, a seeded sample (quick models for tests)."""
    by_intent: dict[str, list[Example]] = {}
    for e in examples:
        by_intent.setdefault(e.intent, []).append(e)
    kept = [e for group in by_intent.values() for e in rng.sample(group, min(per_intent, len(group)))]
    rng.shuffle(kept)
    return kept


def gather(
    domain: Path, data_dir: Path | None = None, quick: bool = False
) -> tuple[NLUSpec, FAQSpec, list[Example], list[Example]]:
    """The domain's training and validation examples (dataset test splits never included)."""
    spec, faq = load_nlu_spec(domain)
    rng = random.Random(spec.training.seed)
    train, valid = [], []
    for n, ref in enumerate(spec.datasets):
        try:
            data = load_dataset(ref.name, data_dir, seed=spec.training.seed)
        except (OSError, ValueError) as exc:
            where = _at(domain / "nlu.yaml", "datasets", n, "name")
            raise DomainError(f"{where}: datasets.{n}.name: {exc}") from exc
        keep = set(ref.intents) if ref.intents else None
        ref_train = [e for e in data.train if keep is None or e.intent in keep]
        ref_valid = [e for e in data.valid if keep is None or e.intent in keep]
        if quick:
            ref_train = _cap(ref_train, QUICK_PER_INTENT, rng)
            ref_valid = _cap(ref_valid, QUICK_PER_INTENT // 4, rng)
        train += ref_train
        valid += ref_valid
    inline = inline_examples(spec, domain / "nlu.yaml")
    rng.shuffle(inline)
    cut = int(len(inline) * VALID_SHARE)
    valid += inline[:cut]
    train += inline[cut:]
    if not train:
        raise DomainError(f"{domain / 'nlu.yaml'}: no training examples (add intents or datasets)")
    train += reviewed_training(domain, train + valid)
    return spec, reviewed_questions(domain, faq), train, valid


def build_faq(faq: FAQSpec, train: list[Example], seed: int) -> FAQ | None:
    if not faq.answers:
        return None
    by_intent: dict[str, list[str]] = {}
    for e in train:
        by_intent.setdefault(e.intent, []).append(e.text)
    pairs = []
    for answer in faq.answers:
        questions = list(answer.questions) + (by_intent.get(answer.intent, []) if answer.intent else [])
        if not questions:
            raise DomainError(f"faq.yaml: answer {answer.id!r} has no questions and no intent with examples")
        pairs += [(q, answer.id) for q in questions]
    random.Random(seed).shuffle(pairs)
    kept, valid = held_out(pairs, max(1, int(len(pairs) * VALID_SHARE)))
    return FAQ(answers={a.id: a.answer for a in faq.answers}, questions=kept, valid=valid)


def held_out(pairs: list[tuple[str, str]], most: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The (question, answer) pairs split for training and validation: up to `most` held out, taken in
    order, but never an answer's last question. An answer whose every question were held out would leave
    the matcher nothing to learn it from (and a one-question FAQ an empty training set, which the trainers'
    batches cannot be drawn from); its questions are skipped and the next pairs held out instead."""
    left = Counter(answer for _, answer in pairs)
    keep: list[tuple[str, str]] = []
    valid: list[tuple[str, str]] = []
    for pair in pairs:
        if len(valid) < most and left[pair[1]] > 1:
            valid.append(pair)
            left[pair[1]] -= 1
        else:
            keep.append(pair)
    return keep, valid


def fingerprint(domain: Path, spec: NLUSpec, data_dir: Path | None, reviews: bool = True) -> str:
    """Hash of everything training reads: domain files, referenced data files' contents, the recipe, and
    (`reviews`) what it takes of the operators' reviews."""
    return fingerprints(domain, spec, data_dir)[0 if reviews else 1]


def fingerprints(domain: Path, spec: NLUSpec, data_dir: Path | None) -> tuple[str, str]:
    """The data's fingerprint with the reviews and without them (the same when there are none, so a domain
    without reviews keeps its models' names): one pass over the data files, which is most of the time."""
    digest = hashlib.sha256(RECIPE_VERSION.encode())
    for name in ("nlu.yaml", "faq.yaml"):
        path = domain / name
        digest.update(path.read_bytes() if path.is_file() else b"")
    root = data_root(data_dir)
    names = [ref.name for ref in spec.datasets] + (["goemotions"] if spec.training.sentiment else [])
    for name in names:
        folder = root / _DATA_FOLDERS.get(name, name.split("-")[0])
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                digest.update(path.name.encode() + hashlib.sha256(path.read_bytes()).digest())
    without = digest.hexdigest()[:12]
    reviews = read_reviews(reviewed_path(domain))
    taken = {"intents": reviewed_examples(reviews), "faq": reviewed_faq(reviews)}
    if taken["intents"] or taken["faq"]:
        digest.update(json.dumps(taken, sort_keys=True).encode())
    return digest.hexdigest()[:12], without


def model_dir(
    domain: Path,
    cache_dir: Path,
    data_dir: Path | None = None,
    quick: bool = False,
    first: bool = False,
    reviews: bool = True,
) -> Path:
    """Where the model of the domain's data (`reviews`: with its operators' reviews) is, or will be."""
    spec, _ = load_nlu_spec(domain)
    return _named(domain, cache_dir, quick, first, fingerprint(domain, spec, data_dir, reviews))


def served_candidates(domain: Path, cache_dir: Path, data_dir: Path | None = None) -> list[Path]:
    """The full then the first model of the domain's data; then, when operators' reviews are part of it,
    the full and first model of the data without them (the ones that served before the reviews)."""
    spec, _ = load_nlu_spec(domain)
    prints = dict.fromkeys(fingerprints(domain, spec, data_dir))  # one when there are no reviews
    return [_named(domain, cache_dir, False, first, fp) for fp in prints for first in (False, True)]


def _named(domain: Path, cache_dir: Path, quick: bool, first: bool, fp: str) -> Path:
    kind = "-quick" if quick else "-first" if first else ""
    return cache_dir / "models" / f"{domain.resolve().name}{kind}-{fp}"


def train_domain(
    domain: Path,
    cache_dir: Path,
    data_dir: Path | None = None,
    force: bool = False,
    progress: bool = True,
    quick: bool = False,
    first: FirstModelConfig | None = None,
) -> tuple[Path, bool]:
    """Train (or reuse) the domain's NLU model; returns its directory and whether it was trained now.

    `quick` trains on a seeded sample of the referenced datasets for fewer epochs: a real model of the
    domain in a few minutes, for the test suite and trying a domain out. `first`: the first model
    (train_first.py), on all the data in about two minutes; otherwise the full fine-tune.
    """
    out = model_dir(domain, cache_dir, data_dir, quick, first is not None)
    if (out / "metrics.json").is_file() and not force:
        return out, False
    with one_trainer(out):
        if (out / "metrics.json").is_file() and not force:  # another process trained it while we waited
            return out, False
        _train(domain, out, data_dir, progress, quick, first)
    return out, True


def lock_path(out: Path) -> Path:
    return out.with_name(out.name + ".lock")


@contextmanager
def one_trainer(out: Path) -> Iterator[None]:
    """Holds `out`'s lock file: two processes asked for the same model (two test workers, a `voicebot
    serve` beside a `voicebot train`) train it once, the second waiting and then reusing it, instead of both
    writing into the same `.partial` folder. The lock is released when the holder exits, even on a crash."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path(out), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _train(
    domain: Path,
    out: Path,
    data_dir: Path | None,
    progress: bool,
    quick: bool,
    first: FirstModelConfig | None,
) -> None:
    spec, faq_spec, train, valid = gather(domain, data_dir, quick)
    epochs = min(spec.training.epochs, QUICK_EPOCHS) if quick else spec.training.epochs
    cfg = JointTrainConfig(epochs=epochs, augment=spec.training.augment, seed=spec.training.seed)
    if spec.training.encoder is not None:
        cfg.encoder = spec.training.encoder
    intents = sorted({e.intent for e in train + valid} | ({OOS} if OOS in spec.intents else set()))
    entity_types = sorted({t[2:] for e in train + valid for t in (e.tags or []) if t != "O"})
    sentiment = None
    if spec.training.sentiment:
        senti = load_sentiment(data_dir)
        sentiment = (senti.train, senti.valid)
        if quick:
            rng = random.Random(spec.training.seed)
            sentiment = (rng.sample(senti.train, min(QUICK_SENTIMENT, len(senti.train))), senti.valid[:1000])
    faq = None if quick else build_faq(faq_spec, train, spec.training.seed)
    trainer = (
        JointTrainer(train, valid, intents, entity_types, cfg, sentiment, faq, progress=progress)
        if first is None
        else FirstModelTrainer(train, valid, intents, entity_types, cfg, first, sentiment, faq, progress)
    )
    tmp = out.with_name(out.name + ".partial")
    trainer.fit(tmp)
    (tmp / "domain.json").write_text(
        json.dumps({"domain": str(domain), "spec": spec.model_dump(mode="json")})
    )
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)  # a half-trained model is never picked up
