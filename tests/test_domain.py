"""The shop domain and the domain loader, without training anything.

The real `domains/shop` folder must load, give every intent and entity type the bot needs and keep the Bitext
test split out of training; a broken domain must name the file, the line and the field of its mistake.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from models.data import Dataset, Example, data_root, load_dataset, spans_to_bio, tokenize
from models.train_domain import build_faq, fingerprint, gather
from tests.conftest import needs_data
from voicebot.domain.nlu_spec import FAQSpec, NLUSpec, load_nlu_spec, parse_markup
from voicebot.domain.yamlfile import DomainError

SHOP = Path(__file__).resolve().parents[1] / "domains" / "shop"
DATA = data_root()

CONVERSATION = ("greet", "goodbye", "affirm", "deny", "repeat", "inform", "oos")
ENTITY_TYPES = ("order_id", "invoice_id", "refund_amount", "delivery_city", "person_name", "email", "phone")
FAQ_INTENTS = (
    "delivery_options", "delivery_period", "check_payment_methods", "check_refund_policy",
    "check_cancellation_fee", "newsletter_subscription", "create_account", "recover_password",
    "registration_problems", "delete_account", "switch_account", "edit_account", "place_order", "review",
    "set_up_shipping_address", "payment_issue", "complaint", "contact_customer_service",
)  # fmt: skip

Gathered = tuple[NLUSpec, FAQSpec, list[Example], list[Example]]


def norm(text: str) -> str:
    return " ".join(text.lower().split())


def entity_types(examples: list[Example]) -> set[str]:
    return {t[2:] for e in examples for t in e.tags or [] if t != "O"}


@pytest.fixture(scope="module")
def shop() -> Gathered:
    return gather(SHOP)


@pytest.fixture(scope="module")
def bitext() -> Dataset:
    return load_dataset("bitext")


# ------------------------------------------------------------------------------------------ the shop domain


def test_shop_domain_loads() -> None:
    nlu, faq = load_nlu_spec(SHOP)
    assert [(d.name, d.intents) for d in nlu.datasets] == [("bitext", None)]
    for intent in CONVERSATION:
        assert len(nlu.intents[intent]) >= 30, intent
    assert {"yes please", "yeah that's right", "correct"} <= set(nlu.intents["affirm"])
    assert {"no that's wrong", "nope", "not quite"} <= set(nlu.intents["deny"])
    assert sorted(a.intent or "" for a in faq.answers) == sorted(FAQ_INTENTS)
    assert all(4 <= len(a.questions) <= 8 for a in faq.answers)


def test_shop_inline_examples_are_unique_and_mark_whole_words() -> None:
    nlu, faq = load_nlu_spec(SHOP)
    texts: Counter[str] = Counter()
    marked: Counter[str] = Counter()
    for intent, examples in nlu.intents.items():
        for raw in examples:
            text, spans = parse_markup(raw)
            texts[norm(text)] += 1
            bounds = {b for _, s, e in tokenize(text) for b in (s, e)}
            for kind, start, end in spans:
                marked[kind] += 1
                assert {start, end} <= bounds, f"{intent}: {raw!r}: {kind} cuts a word"
                assert text[start:end] == text[start:end].strip(), raw
    texts.update(norm(q) for a in faq.answers for q in a.questions)
    assert [t for t, n in texts.items() if n > 1] == []
    assert {t: marked[t] for t in ENTITY_TYPES if marked[t] < 12} == {}


def test_shop_faq_answers_are_written_for_the_ear() -> None:
    _, faq = load_nlu_spec(SHOP)
    for a in faq.answers:
        assert 1 <= len(re.findall(r"[.!?](?:\s|$)", a.answer)) <= 3, a.id
        assert len(a.answer.split()) <= 50, a.id
        assert not re.search(r"\d|click|http|\.com", a.answer, re.IGNORECASE), a.id


@needs_data
def test_gather_has_every_intent_and_entity_type(shop: Gathered, bitext: Dataset) -> None:
    spec, _, train, valid = shop
    assert len(bitext.intents) == 27
    assert {e.intent for e in train} == set(bitext.intents) | set(CONVERSATION)
    assert {e.intent for e in valid} <= {e.intent for e in train}
    assert set(ENTITY_TYPES) <= entity_types(train)
    assert all(e.tokens is not None and len(e.tokens) == len(e.tags or []) for e in train + valid)
    inline = sum(len(v) for v in spec.intents.values())
    assert len(train) + len(valid) == len(bitext.train) + len(bitext.valid) + inline
    assert len(valid) - len(bitext.valid) == inline // 10


@needs_data
def test_gather_keeps_the_bitext_test_split_out(shop: Gathered, bitext: Dataset) -> None:
    _, faq, train, valid = shop
    held_out = {norm(e.text) for e in bitext.test}
    assert len(held_out) > 500
    assert {norm(e.text) for e in train + valid} & held_out == set()
    assert {norm(q) for a in faq.answers for q in a.questions} & held_out == set()


@needs_data
def test_build_faq_gives_questions_for_every_answer(shop: Gathered) -> None:
    spec, faq_spec, train, _ = shop
    faq = build_faq(faq_spec, train, spec.training.seed)
    assert faq is not None
    assert set(faq.answers) == {a.id for a in faq_spec.answers}
    asked = Counter(answer_id for _, answer_id in faq.questions + faq.valid)
    per_intent = Counter(e.intent for e in train)
    for a in faq_spec.answers:
        assert a.intent is not None and per_intent[a.intent] >= 50
        assert asked[a.id] == len(a.questions) + per_intent[a.intent], a.id
    assert faq.valid and set(faq.valid).isdisjoint(faq.questions)


# ------------------------------------------------------------------------------------------ fingerprint


def test_fingerprint_is_stable_and_follows_the_domain_files(tmp_path: Path) -> None:
    domain = tmp_path / "shop"
    shutil.copytree(SHOP, domain)
    spec, _ = load_nlu_spec(domain)
    first = fingerprint(domain, spec, None)
    assert re.fullmatch(r"[0-9a-f]{12}", first)
    assert fingerprint(domain, spec, None) == first == fingerprint(SHOP, load_nlu_spec(SHOP)[0], None)

    nlu = domain / "nlu.yaml"
    nlu.write_text(nlu.read_text().replace("    - hello\n", "    - hello\n    - hello again\n", 1))
    spec, _ = load_nlu_spec(domain)
    assert "hello again" in spec.intents["greet"]
    second = fingerprint(domain, spec, None)
    assert second != first

    faq = domain / "faq.yaml"
    faq.write_text(faq.read_text().replace("thirty days", "sixty days"))
    assert fingerprint(domain, spec, None) not in (first, second)


def test_fingerprint_follows_the_dataset_files(tmp_path: Path) -> None:
    domain, data = tmp_path / "shop", tmp_path / "data"
    shutil.copytree(SHOP, domain)
    spec, _ = load_nlu_spec(domain)
    corpus = data / "bitext_customer_support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
    corpus.parent.mkdir(parents=True)
    corpus.write_text("instruction,intent\n")
    before = fingerprint(domain, spec, data)
    corpus.write_text("instruction,intent\ncancel my order,cancel_order\n")
    assert fingerprint(domain, spec, data) != before


# ------------------------------------------------------------------------------------------ markup


@pytest.mark.parametrize(
    ("raw", "text", "spans"),
    [
        ("hello there", "hello there", []),
        ("cancel [four five](order_id)", "cancel four five", [("order_id", 7, 16)]),
        ("[Boston](delivery_city) please", "Boston please", [("delivery_city", 0, 6)]),
        ("is it [457219](order_id)?", "is it 457219?", [("order_id", 6, 12)]),
        (
            "I'm [Li Wei](person_name), order [4 5 7](order_id).",
            "I'm Li Wei, order 4 5 7.",
            [("person_name", 4, 10), ("order_id", 18, 23)],
        ),
        (
            "from [a@b.com](email) to [c at d dot com](email), call [555-0142](phone)!",
            "from a@b.com to c at d dot com, call 555-0142!",
            [("email", 5, 12), ("email", 16, 30), ("phone", 37, 45)],
        ),
        ("a [b] c (d)", "a [b] c (d)", []),
    ],
)
def test_parse_markup(raw: str, text: str, spans: list[tuple[str, int, int]]) -> None:
    assert parse_markup(raw) == (text, spans)


def test_markup_next_to_punctuation_tags_only_the_value() -> None:
    tokens, tags = spans_to_bio(*parse_markup("order ([457219](order_id)), thanks."))
    assert list(zip(tokens, tags, strict=True)) == [
        ("order", "O"), ("(", "O"), ("457219", "B-order_id"), (")", "O"), (",", "O"), ("thanks", "O"),
        (".", "O"),
    ]  # fmt: skip
    tokens, tags = spans_to_bio(*parse_markup("email [j.smith@example.com](email)."))
    assert tags == ["O", "B-email", "O"] and tokens[1] == "j.smith@example.com"


# ------------------------------------------------------------------------------------------ broken domains

GOOD_NLU = "intents:\n  greet:\n    - hi\n"
TWO_ANSWERS = "answers:\n  - id: a\n    answer: Fine.\n    questions: [hi]\n  - id: b\n"

# case: (nlu.yaml, faq.yaml or None, the file at fault, its line, text the message must contain)
BROKEN = {
    "invalid_yaml": (GOOD_NLU + "  goodbye: bye: now\n", None, "nlu.yaml", 4, "invalid YAML"),
    "unknown_top_level_key": (GOOD_NLU + "language: en\n", None, "nlu.yaml", 4, "language: Extra inputs"),
    "bare_yes_is_a_boolean": ("intents:\n  affirm:\n    - yes\n", None, "nlu.yaml", 3, "intents.affirm.0"),
    "bad_intent_name": (GOOD_NLU + "  Greet Me:\n    - hello\n", None, "nlu.yaml", 4, "'Greet Me'"),
    "malformed_markup": (
        "intents:\n  cancel_order:\n    - cancel [457219](order_id)\n    - cancel [oops(order_id)\n",
        None, "nlu.yaml", 4, "malformed entity markup in 'cancel [oops(order_id)'",
    ),
    "entities_in_one_word": (
        "intents:\n  cancel_order:\n    - hi\n    - cancel [45](order_id)[72](order_id)\n",
        None, "nlu.yaml", 4, "intents.cancel_order.1",
    ),
    "unknown_dataset": (GOOD_NLU + "datasets:\n  - name: bitxt\n", None, "nlu.yaml", 5, "dataset 'bitxt'"),
    "url_in_answer": (
        GOOD_NLU, TWO_ANSWERS + "    answer: See https://shop.example.com for details.\n",
        "faq.yaml", 6, "answers.1.answer: Value error, answers are spoken",
    ),
    "markdown_in_answer": (
        GOOD_NLU, "answers:\n  - id: a\n    answer: >-\n      This is **important**.\n",
        "faq.yaml", 3, "answers.0.answer: Value error, answers are spoken",
    ),
    "misspelt_answer_key": (
        GOOD_NLU, "answers:\n  - id: a\n    answer: Fine.\n    question: [hi]\n",
        "faq.yaml", 4, "answers.0.question: Extra inputs",
    ),
    "duplicate_answer_id": (
        GOOD_NLU, TWO_ANSWERS + "    answer: Two.\n  - id: a\n    answer: Three.\n",
        "faq.yaml", 7, "duplicate answer id 'a'",
    ),
}  # fmt: skip


def broken_domain(tmp_path: Path, case: str) -> tuple[Path, str]:
    nlu, faq, at_fault, _, _ = BROKEN[case]
    (tmp_path / "nlu.yaml").write_text(nlu)
    if faq is not None:
        (tmp_path / "faq.yaml").write_text(faq)
    with pytest.raises(DomainError) as err:
        gather(tmp_path)
    return tmp_path / at_fault, str(err.value)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_domain_names_file_and_field(tmp_path: Path, case: str) -> None:
    path, message = broken_domain(tmp_path, case)
    assert message.startswith(f"{path}:"), message
    assert BROKEN[case][4] in message


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_domain_names_the_line(tmp_path: Path, case: str) -> None:
    path, message = broken_domain(tmp_path, case)
    assert message.startswith(f"{path}:{BROKEN[case][3]}: "), message


def test_missing_nlu_yaml(tmp_path: Path) -> None:
    (tmp_path / "faq.yaml").write_text("answers: []\n")
    for load in (load_nlu_spec, gather):
        with pytest.raises(DomainError, match=rf"^{re.escape(str(tmp_path / 'nlu.yaml'))}: missing"):
            load(tmp_path)
