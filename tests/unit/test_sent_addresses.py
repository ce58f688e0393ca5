"""RFC 5322 address-list parsing and Bcc computation for copy-to-Sent."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailopsd.sent.addresses import Address, bcc_addresses, parse_address_list


def keys(text: str) -> list[str]:
    return [a.key for a in parse_address_list(text)]


def test_exim_recipients_list_with_quoted_comma_local_part() -> None:
    text = 'bob@example.test, "doe, john"@remote.test, Carol@Remote.TEST'
    addrs = parse_address_list(text)
    assert [a.local for a in addrs] == ["bob", "doe, john", "Carol"]
    assert keys(text) == ["bob@example.test", "doe, john@remote.test", "carol@remote.test"]


def test_display_names_comments_and_groups_are_not_addresses() -> None:
    text = ('"Doe, Jane" <jane@x.test>, bob@y.test (Bob, the builder), '
            'Team: a@t.test, "b,c"@t.test;, undisclosed-recipients:;, <@r1,@r2:route@z.test>')
    assert keys(text) == ["jane@x.test", "bob@y.test", "a@t.test", "b,c@t.test",
                          "route@z.test"]


def test_quoted_pairs_angle_brackets_inside_quotes_and_literals() -> None:
    text = r'"a\"b <c@d>"@x.test, "x>y"@w.test, user@[192.0.2.1], =?utf-8?q?A=2C_B?= <ab@q.test>'
    assert keys(text) == ['a"b <c@d>@x.test', "x>y@w.test", "user@[192.0.2.1]", "ab@q.test"]


def test_quoting_is_not_significant_for_comparison() -> None:
    a, b = parse_address_list('"John.Doe"@Example.TEST, john.doe@example.test')
    assert a.key == b.key


def test_render_quotes_only_when_needed_and_refuses_control_characters() -> None:
    assert Address("john.doe", "x.test").render() == "john.doe@x.test"
    assert Address("doe, john", "x.test").render() == '"doe, john"@x.test'
    assert Address('a"b\\c', "x.test").render() == '"a\\"b\\\\c"@x.test'
    for bad in ("a\r\nBcc: evil@x", "a\nb", "nul\x00"):
        try:
            Address(bad, "x.test").render()
        except ValueError:
            continue
        raise AssertionError(f"rendered {bad!r}")


def test_bcc_is_envelope_minus_to_cc_case_insensitive_without_duplicates() -> None:
    rcpts = parse_address_list('bob@example.test, ext1@remote.test, carol@remote.test, '
                               'dave@remote.test, "doe, john"@remote.test, DAVE@remote.test, '
                               'Alice@example.test')
    visible = parse_address_list("Bob <BOB@example.test>, ext1@remote.test") + \
        parse_address_list("carol@REMOTE.test")
    assert [a.render() for a in bcc_addresses(rcpts, visible)] == [
        "dave@remote.test", '"doe, john"@remote.test', "Alice@example.test"]


def test_hostile_input_never_crashes() -> None:
    for text in ('"unterminated, a@b', "((((nested", "<<<>>>", "\\", ":;,,;:", "a@", "@b",
                 "(comment \\) still) x@y.test", "\x00@\x00"):
        parse_address_list(text)
    assert keys("(comment \\) still) x@y.test") == ["x@y.test"]


@given(st.text(max_size=200))
def test_any_text_parses_to_addresses_without_error(text: str) -> None:
    for addr in parse_address_list(text):
        assert addr.local


@given(st.lists(st.from_regex(r"[a-z0-9][a-z0-9.,\- ]{0,12}[a-z0-9]", fullmatch=True),
                min_size=1, max_size=8))
def test_rendered_addresses_round_trip(locals_: list[str]) -> None:
    addrs = [Address(lp, "example.test") for lp in locals_]
    text = ", ".join(a.render() for a in addrs)
    assert [a.key for a in parse_address_list(text)] == [a.key for a in addrs]
