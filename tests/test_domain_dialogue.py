"""Loading a dialogue domain: every mistake a company can make editing YAML names its file, line and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from voicebot.dialogue.brain import DialogueFactory
from voicebot.domain.loader import BUILTIN_RESPONSES, DEFAULT_RESPONSES, is_dialogue_domain, load_domain
from voicebot.domain.yamlfile import DomainError
from voicebot.testing.fakes import ScriptedNLU

SHOP = Path(__file__).resolve().parent.parent / "domains" / "shop"


@pytest.fixture
def domain_dir(tmp_path: Path) -> Path:
    out = tmp_path / "shop"
    shutil.copytree(SHOP, out, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite"))
    return out


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_shop_domain_loads_with_every_builtin_response() -> None:
    domain = load_domain(SHOP)
    assert is_dialogue_domain(SHOP)
    assert set(BUILTIN_RESPONSES) <= set(domain.responses)
    assert domain.flow_for_intent("track_order") == "track_order"
    assert domain.menu is not None and domain.menu.options["1"].flow == "track_order"
    assert "delivery_options" in domain.faq


def test_flow_naming_a_missing_slot(domain_dir: Path) -> None:
    flows = domain_dir / "flows.yaml"
    edit(
        flows,
        "slots: [order_id]\n    action: order_status",
        "slots: [order_number]\n    action: order_status",
    )
    with pytest.raises(DomainError) as err:
        load_domain(domain_dir)
    assert f"flows.yaml:{line_of(flows, 'order_number')}: flows.track_order.slots.0" in str(err.value)
    assert "unknown slot 'order_number'" in str(err.value)


def test_flow_naming_a_missing_response(domain_dir: Path) -> None:
    flows = domain_dir / "flows.yaml"
    edit(flows, "confirm: confirm_cancel", "confirm: confirm_cancellation")
    with pytest.raises(DomainError, match=r"flows\.yaml:\d+: flows\.cancel_order\.confirm: unknown response"):
        load_domain(domain_dir)


def test_template_with_unknown_placeholder(domain_dir: Path) -> None:
    responses = domain_dir / "responses.yaml"
    edit(responses, "I couldn't find invoice {invoice_id}.", "I couldn't find invoice {invoice_number}.")
    with pytest.raises(DomainError) as err:
        load_domain(domain_dir)
    line = line_of(responses, "{invoice_number}")
    assert (
        f"responses.yaml:{line}: responses.unknown_invoice.0: unknown placeholder {{invoice_number}}"
        in str(err.value)
    )


def test_unspeakable_response_and_invalid_yaml(domain_dir: Path) -> None:
    responses = domain_dir / "responses.yaml"
    edit(responses, "Thanks for calling Acme Shop. Goodbye!", "See https://acme.example/help. Goodbye!")
    with pytest.raises(DomainError, match=r"responses\.goodbye\.0: .*spoken"):
        load_domain(domain_dir)
    (domain_dir / "slots.yaml").write_text("slots:\n  order_id: [unclosed\n")
    with pytest.raises(DomainError, match=r"slots\.yaml:\d+: invalid YAML"):
        load_domain(domain_dir)


def test_missing_builtin_response_and_missing_file(domain_dir: Path) -> None:
    responses = domain_dir / "responses.yaml"
    edit(responses, "  dtmf_hint:\n", "  keypad_hint:\n")
    with pytest.raises(DomainError, match=r"responses\.dtmf_hint: missing"):
        load_domain(domain_dir)
    (domain_dir / "flows.yaml").unlink()
    with pytest.raises(DomainError, match=r"missing flows\.yaml"):
        load_domain(domain_dir)


def test_wrong_types_and_unknown_keys(domain_dir: Path) -> None:
    slots = domain_dir / "slots.yaml"
    edit(
        slots,
        "    type: digits\n    dtmf: true\n    min_length: 6",
        "    type: digitz\n    dtmf: true\n    min_length: 6",
    )
    with pytest.raises(DomainError, match=r"slots\.yaml:\d+: slots\.order_id\.type"):
        load_domain(domain_dir)
    shutil.copy(SHOP / "slots.yaml", slots)
    settings = domain_dir / "settings.yaml"
    edit(settings, "  no_input_s: 7.0", "  no_input_secs: 7.0")
    with pytest.raises(DomainError, match=r"settings\.yaml:\d+: timeouts\.no_input_secs: Extra inputs"):
        load_domain(domain_dir)


def test_action_flow_needs_a_default_failure_and_cases_need_outputs(domain_dir: Path) -> None:
    flows = domain_dir / "flows.yaml"
    edit(
        flows, "      no_refund: no_refund\n      default: backend_trouble\n", "      no_refund: no_refund\n"
    )
    with pytest.raises(DomainError, match=r"flows\.track_refund\.failure: .*failure\.default"):
        load_domain(domain_dir)
    shutil.copy(SHOP / "flows.yaml", flows)
    edit(flows, "    outputs: [amount, status, expected_date]", "    outputs: [amount, expected_date]")
    with pytest.raises(DomainError, match=r"flows\.track_refund\.success\.by: 'status' is not one"):
        load_domain(domain_dir)


def test_menu_option_must_do_one_thing(domain_dir: Path) -> None:
    flows = domain_dir / "flows.yaml"
    edit(flows, '"1": {flow: track_order}', '"1": {flow: track_order, transfer: true}')
    with pytest.raises(DomainError, match=r"menu\.options\.1: .*exactly one"):
        load_domain(domain_dir)


def test_the_engine_words_its_newer_responses_when_a_domain_does_not(domain_dir: Path) -> None:
    responses = domain_dir / "responses.yaml"
    edit(responses, "  noisy_line:\n    - Sorry, the line is noisy, could you say that again?\n", "")
    edit(responses, "    - Sorry, it's still noisy on the line.\n", "")
    edit(
        responses,
        "    - I've got {partial} so far. What's the rest?\n",
        "    - So far {partial}. And then?\n",
    )
    domain = load_domain(domain_dir)
    assert domain.responses["noisy_line"] == DEFAULT_RESPONSES["noisy_line"]
    assert domain.responses["partial_number"] == ["So far {partial}. And then?"]  # the domain's own wins


def test_slot_lookup_and_digit_pause_settings(domain_dir: Path) -> None:
    domain = load_domain(domain_dir)
    assert domain.slots["order_id"].lookup == "order_exists" and domain.slots["email"].lookup is None
    assert domain.settings.timeouts.digits_end_silence_ms == 1500
    edit(domain_dir / "slots.yaml", "lookup: order_exists", "lookup: Order-Exists")
    with pytest.raises(DomainError, match=r"slots\.yaml:\d+: slots\.order_id\.lookup"):
        load_domain(domain_dir)


def test_a_lookup_naming_a_missing_action(domain_dir: Path, tmp_path: Path) -> None:
    edit(domain_dir / "slots.yaml", "lookup: invoice_exists", "lookup: invoice_known")
    domain = load_domain(domain_dir)
    intents = {i for name, flow in domain.flows.items() for i in flow.intents or [name]}
    with pytest.raises(
        DomainError, match=r"slots\.yaml:\d+: slots\.invoice_id\.lookup: no action 'invoice_known'"
    ):
        DialogueFactory(domain_dir, ScriptedNLU({}, intents), cache_dir=tmp_path, scratch=tmp_path / "s")
