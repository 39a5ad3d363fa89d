"""The protocol channels' pure parts: the SMPP 3.4 codec against byte vectors written out from
the specification's field tables (SMPP v3.4, sections 3.2, 4.1.1, 4.4.1, 4.6.1, 4.11.1), the
SMS encoder's alphabets and segment limits, the SMPP status and FCM error mappings, the push
payload limit, and the channel factory's fail-closed options."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import orjson
import pytest

from streams.delivery.channels import check_channel_options, check_smpp_url
from streams.delivery.content import Message, message_of
from streams.delivery.push import MAX_PAYLOAD, build_message, fit_payload, outcome_of_fcm
from streams.delivery.smpp import (
    BIND_TRANSMITTER,
    ENQUIRE_LINK,
    Segment,
    decode_header,
    decode_segment,
    encode_pdu,
    encode_sms,
    is_receipt,
    outcome_of_status,
    parse_deliver_sm,
    parse_receipt,
    reference_of,
    submit_sm_body,
    validity_period,
)
from streams.settings.model import Settings

VIETNAMESE = "Bão số 3 đổ bộ đêm nay. Người dân ven biển sơ tán ngay đến nơi trú ẩn gần nhất."


# ---------------------------------------------------------------- PDU codec


def test_enquire_link_is_a_bare_16_byte_header() -> None:
    assert encode_pdu(ENQUIRE_LINK, 1) == bytes.fromhex("00000010 00000015 00000000 00000001")
    assert decode_header(bytes.fromhex("00000010 80000015 00000000 00000001")) == (
        16,
        0x80000015,
        0,
        1,
    )


def test_bind_transmitter_carries_c_strings_and_interface_version_34() -> None:
    from streams.delivery.smpp import bind_body

    pdu = encode_pdu(BIND_TRANSMITTER, 1, bind_body("loa", "secret"))
    assert pdu == bytes.fromhex(
        "00000020 00000002 00000000 00000001"  # length 32, bind_transmitter, status, seq
        "6c6f6100"  # system_id "loa"
        "73656372657400"  # password "secret"
        "00"  # system_type ""
        "34 00 00"  # interface_version 3.4, addr_ton, addr_npi
        "00"  # address_range ""
    )


def test_a_password_longer_than_smpp_allows_is_refused() -> None:
    from streams.delivery.smpp import bind_body

    with pytest.raises(ValueError, match="at most 8"):
        bind_body("loa", "123456789")


def test_submit_sm_body_follows_the_field_order_of_the_spec() -> None:
    body = submit_sm_body("LOA", "84912345678", Segment(0, 0, b"Hi", 2))
    assert body == bytes.fromhex(
        "00"  # service_type ""
        "05 00 4c4f4100"  # source TON alphanumeric, NPI unknown, "LOA"
        "01 01 383439313233343536373800"  # dest TON international, NPI E.164, "84912345678"
        "00 00 00"  # esm_class, protocol_id, priority_flag
        "00 00"  # schedule_delivery_time, validity_period: ""
        "00 00 00 00"  # registered_delivery, replace_if_present, data_coding, sm_default_msg_id
        "02 4869"  # sm_length, short_message "Hi"
    )


def test_validity_period_is_the_alerts_expiry_in_smpp_absolute_time() -> None:
    assert validity_period(1796137200) == "261201150000000+"  # 2026-12-01 15:00:00 UTC
    assert validity_period(None) == ""


def test_a_delivery_receipt_is_parsed_from_deliver_sm() -> None:
    text = (
        b"id:1a sub:001 dlvrd:001 submit date:2612061500 done date:2612061501"
        b" stat:DELIVRD err:000 text:"
    )
    body = (
        b"\x00"  # service_type
        + b"\x01\x01849123\x00"  # source (the handset)
        + b"\x05\x00LOA\x00"  # destination (us)
        + b"\x04\x00\x00"  # esm_class: SMSC delivery receipt
        + b"\x00\x00"  # schedule, validity
        + b"\x00\x00\x00\x00"  # registered_delivery, replace, data_coding, default msg id
        + bytes((len(text),))
        + text
    )
    fields = parse_deliver_sm(body)
    assert fields["source"] == "849123" and fields["destination"] == "LOA"
    assert is_receipt(fields["esm_class"]) and not is_receipt(0x00)
    receipt = parse_receipt(fields["short_message"])
    assert receipt["id"] == "1a" and receipt["stat"] == "DELIVRD"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0x00, ("delivered", None, None)),
        (0x58, ("retry", "rate_limited", 2.0)),  # ESME_RTHROTTLED
        (0x14, ("retry", "rate_limited", 2.0)),  # ESME_RMSGQFUL
        (0x0B, ("failed", "smpp_invalid_destination_address", None)),  # ESME_RINVDSTADR
        (0x01, ("failed", "smpp_invalid_message_length", None)),
        (0x08, ("retry", "smpp_0x08", None)),  # ESME_RSYSERR: transient
        (0x45, ("retry", "smpp_0x45", None)),  # ESME_RSUBMITFAIL
        (0x401, ("retry", "smpp_0x401", None)),  # a vendor code: retried, never dropped
    ],
)
def test_submit_sm_resp_status_maps_to_delivered_retry_or_failed(
    status: int, expected: tuple[str, str | None, float | None]
) -> None:
    outcome = outcome_of_status(status, throttle_pause_s=2.0)
    assert (outcome.status, outcome.reason, outcome.after_s) == expected


# ---------------------------------------------------------------- SMS encoder


def test_plain_ascii_goes_as_gsm_7_bit_160_in_one_sms_and_153_per_segment() -> None:
    assert [(s.data_coding, s.esm_class, s.units) for s in encode_sms("a" * 160)] == [(0, 0, 160)]
    segments = encode_sms("a" * 161, reference=0x2A)
    assert [s.units for s in segments] == [153, 8]
    assert all(s.data_coding == 0 and s.esm_class == 0x40 for s in segments)
    # concatenation UDH: IEI 00, length 3, reference, total, sequence
    assert segments[0].short_message[:6] == bytes.fromhex("050003 2a 02 01")
    assert segments[1].short_message[:6] == bytes.fromhex("050003 2a 02 02")
    assert len(encode_sms("a" * 306)) == 2 and len(encode_sms("a" * 307)) == 3


def test_gsm_extension_characters_take_two_septets_and_are_never_split() -> None:
    assert encode_sms("€")[0].short_message == bytes.fromhex("1b65")
    assert [s.units for s in encode_sms("{" * 80)] == [160]  # 80 characters, 160 septets
    segments = encode_sms("{" * 81)  # 162 septets: an escape pair may not straddle segments
    assert [s.units for s in segments] == [152, 10]
    assert all(s.short_message[6:][:1] == b"\x1b" for s in segments)


def test_vietnamese_goes_as_ucs2_70_in_one_sms_and_67_per_segment() -> None:
    assert len(VIETNAMESE) == 79
    segments = encode_sms(VIETNAMESE, reference=7)
    assert [(s.data_coding, s.esm_class, s.units) for s in segments] == [
        (8, 0x40, 67),
        (8, 0x40, 12),
    ]
    text = "".join(decode_segment(s.short_message, 8, s.esm_class)[0] for s in segments)
    assert text == VIETNAMESE
    single = encode_sms("Bão" * 23 + "x")  # 70 characters
    assert len(single) == 1 and single[0].data_coding == 8 and single[0].units == 70
    assert single[0].short_message[:6] == bytes.fromhex("0042 00e3 006f")
    assert [s.units for s in encode_sms("ă" * 71)] == [67, 4]
    assert len(encode_sms("ă" * 134)) == 2 and len(encode_sms("ă" * 135)) == 3


def test_decomposed_vietnamese_is_normalised_so_each_letter_is_one_ucs2_unit() -> None:
    decomposed = unicodedata.normalize("NFD", "Bão số")
    assert len(decomposed) > len("Bão số")
    assert encode_sms(decomposed)[0].short_message == "Bão số".encode("utf-16-be")


def test_a_surrogate_pair_is_never_split_between_segments() -> None:
    assert len(encode_sms("ă" * 66 + "🌀" + "ă")) == 1  # 69 units: one SMS
    segments = encode_sms("ă" * 66 + "🌀" + "ă" * 3)  # the cyclone emoji needs two UTF-16 units
    assert [s.units for s in segments] == [66, 5]
    assert decode_segment(segments[1].short_message, 8, 0x40)[0] == "🌀ăăă"


def test_text_over_max_segments_is_cut_at_a_word_and_ends_with_an_ellipsis() -> None:
    segments = encode_sms("Sơ tán ngay " * 100, max_segments=3)
    assert len(segments) == 3
    text = "".join(decode_segment(s.short_message, 8, 0x40)[0] for s in segments)
    assert text.endswith("ngay…") or text.endswith("tán…") or text.endswith("Sơ…")
    assert len(text) <= 3 * 67
    one = encode_sms("word " * 100, max_segments=1)
    assert len(one) == 1 and one[0].esm_class == 0
    assert decode_segment(one[0].short_message, 0, 0)[0].endswith("word...")


def test_the_concatenation_reference_is_stable_for_a_task_key() -> None:
    assert reference_of("a/b:1:7") == reference_of("a/b:1:7")
    assert 0 <= reference_of("a/b:1:7") <= 255


# ---------------------------------------------------------------- content


def test_the_message_is_in_the_recipients_language_else_the_first_info() -> None:
    infos = [
        {"language": "vi-VN", "event": "Bão", "headline": "Bão số 3", "instruction": "Sơ tán"},
        {"language": "en-US", "event": "Typhoon", "headline": "Typhoon 3", "description": "Go"},
    ]
    assert message_of(infos, "en") == Message("Typhoon 3", "Go")
    assert message_of(infos, "vi") == Message("Bão số 3", "Sơ tán")
    assert message_of(infos, "km") == Message("Bão số 3", "Sơ tán")
    assert Message("Bão số 3", "Sơ tán").sms == "Bão số 3: Sơ tán"
    assert message_of([], "vi") is None


# ---------------------------------------------------------------- push


def _fcm_error(status: str, code: str | None = None) -> bytes:
    details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]
    return orjson.dumps({"error": {"status": status, "details": details if code else []}})


@pytest.mark.parametrize(
    ("http", "headers", "body", "expected"),
    [
        (200, {}, b'{"name":"projects/p/messages/1"}', ("delivered", None, None)),
        (
            400,
            {},
            _fcm_error("INVALID_ARGUMENT", "INVALID_ARGUMENT"),
            ("failed", "push_invalid_argument", None),
        ),
        (404, {}, _fcm_error("NOT_FOUND", "UNREGISTERED"), ("failed", "push_unregistered", None)),
        (
            403,
            {},
            _fcm_error("PERMISSION_DENIED", "SENDER_ID_MISMATCH"),
            ("failed", "push_sender_id_mismatch", None),
        ),
        (
            401,
            {},
            _fcm_error("UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR"),
            ("retry", "push_credential_401", None),
        ),
        (403, {}, _fcm_error("PERMISSION_DENIED"), ("retry", "push_credential_403", None)),
        (
            429,
            {"retry-after": "7"},
            _fcm_error("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"),
            ("retry", "rate_limited", 7.0),
        ),
        (500, {}, _fcm_error("INTERNAL", "INTERNAL"), ("retry", "push_internal", None)),
        (
            503,
            {"retry-after": "3"},
            _fcm_error("UNAVAILABLE", "UNAVAILABLE"),
            ("retry", "push_unavailable", 3.0),
        ),
        (502, {}, b"<html>bad gateway</html>", ("retry", "push_502", None)),
        (413, {}, b"", ("failed", "push_http_413", None)),
    ],
)
def test_fcm_answers_map_to_delivered_retry_or_failed(
    http: int, headers: dict[str, str], body: bytes, expected: tuple[str, str | None, float | None]
) -> None:
    outcome = outcome_of_fcm(http, headers, body)
    assert (outcome.status, outcome.reason, outcome.after_s) == expected


def _task(**extra: object) -> dict[str, object]:
    return {
        "alert_id": "vn.ndma/T3",
        "version": 2,
        "kind": "alert",
        "priority": "extreme",
        "recipient_id": 42,
        "channel": "push",
        "language": "vi",
        "idempotency_key": "vn.ndma/T3:2:42",
        **extra,
    }


def test_push_message_has_the_fcm_v1_shape_with_ttl_until_expiry() -> None:
    body = build_message(_task(expires=1000), "tok-42", Message("Bão", "Sơ tán"), now=400.2)
    message = body["message"]
    assert message["token"] == "tok-42"
    assert message["notification"] == {"title": "Bão", "body": "Sơ tán"}
    assert message["data"]["idempotency_key"] == "vn.ndma/T3:2:42"
    assert all(isinstance(v, str) for v in message["data"].values())  # FCM data is strings
    assert message["android"]["priority"] == "high" and message["android"]["ttl"] == "600s"
    assert message["apns"]["headers"]["apns-expiration"] == "1000"
    tag = message["android"]["notification"]["tag"]
    assert tag == message["apns"]["headers"]["apns-collapse-id"] and len(tag) <= 64
    assert "ttl" not in build_message(_task(), "t", Message("a", "b"), 0)["message"]["android"]


def test_a_push_payload_over_4096_bytes_is_cut_at_a_word_body_first() -> None:
    data = {"idempotency_key": "k"}
    title, body = fit_payload("Bão số 3", "Sơ tán ngay " * 600, data)
    size = len(orjson.dumps({"title": title, "body": body})) + len(orjson.dumps(data))
    assert size <= MAX_PAYLOAD and size > MAX_PAYLOAD - 40
    assert title == "Bão số 3" and body.endswith("…") and not body.endswith(" …")
    assert fit_payload("short", "body", data) == ("short", "body")
    title, body = fit_payload("T " * 3000, "body", data)
    assert body == "" and title.endswith("…")
    assert len(orjson.dumps({"title": title, "body": body})) + len(orjson.dumps(data)) <= 4096


# ---------------------------------------------------------------- options


def test_an_smsc_address_must_be_smpp_host_port() -> None:
    assert check_smpp_url("smpp://smsc.example:2775") == ("smsc.example", 2775)
    assert check_smpp_url("smpp://10.0.0.1") == ("10.0.0.1", 2775)
    for bad in ("http://x:2775", "smpp://", "smpp://x:port", "x:2775", "smpp://x:1/path"):
        with pytest.raises(ValueError):
            check_smpp_url(bad)


def test_provider_options_fail_closed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("pw\n")
    with pytest.raises(ValueError, match="SYSTEM_ID"):
        check_channel_options("smpp", "smpp://h:1", Settings())
    with pytest.raises(ValueError, match="cannot read"):
        check_channel_options(
            "smpp",
            "smpp://h:1",
            Settings(delivery_smpp_system_id="loa", delivery_smpp_password_file="/nonexistent"),
        )
    check_channel_options(
        "smpp",
        "smpp://h:1",
        Settings(delivery_smpp_system_id="loa", delivery_smpp_password_file=str(secret)),
    )
    with pytest.raises(ValueError, match="PROJECT"):
        check_channel_options("push", "https://fcm.example", Settings())
    with pytest.raises(ValueError, match="http"):
        check_channel_options(
            "push",
            "ftp://x",
            Settings(delivery_push_project="p", delivery_push_token_file=str(secret)),
        )
    check_channel_options(
        "push",
        "https://fcm.example",
        Settings(delivery_push_project="p", delivery_push_token_file=str(secret)),
    )


def test_an_address_template_naming_anything_but_recipient_id_is_refused() -> None:
    with pytest.raises(ValueError, match="recipient_id"):
        Settings(delivery_smpp_address_template="{phone}").validate()
    Settings(delivery_smpp_address_template="84{recipient_id:09d}").validate()
    with pytest.raises(ValueError, match="WINDOW"):
        Settings(delivery_smpp_window=0).validate()
