from receiver.ingest.signature import secret_presented, signature_matches

# HMAC-SHA1 vectors computed independently with `openssl dgst -sha1 -hmac`.
FOX = b"The quick brown fox jumps over the lazy dog"
FOX_KEY_SHA1 = "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9"
FIRST_ELEMENT = b'{"type":"track","event":"Signed Up","messageId":"m-1"}'
FIRST_ELEMENT_S3CRET_SHA1 = "1acaf2182f709bcf7c2a2b6883c6eafd342c9346"


def test_signature_over_the_whole_body_matches_a_known_vector():
    assert signature_matches("key", FOX, FOX_KEY_SHA1)
    assert signature_matches("key", FOX, FOX_KEY_SHA1.upper())


def test_signature_with_another_secret_does_not_match():
    assert not signature_matches("other", FOX, FOX_KEY_SHA1)


def test_batch_signed_over_its_first_element_matches_as_received():
    body = b"[ " + FIRST_ELEMENT + b' ,\n {"type":"track","event":"Other"}]'
    assert signature_matches("s3cret", body, FIRST_ELEMENT_S3CRET_SHA1)


def test_first_element_signature_is_checked_against_raw_bytes_not_a_reserialisation():
    spaced = FIRST_ELEMENT.replace(b'","', b'", "')
    assert not signature_matches("s3cret", b"[" + spaced + b"]", FIRST_ELEMENT_S3CRET_SHA1)


def test_object_body_is_not_verified_against_a_fragment():
    body = b'{"batch":[' + FIRST_ELEMENT + b"]}"
    assert not signature_matches("s3cret", body, FIRST_ELEMENT_S3CRET_SHA1)


def test_secret_header_must_equal_the_secret():
    assert secret_presented("s3cret", {"X-Api-Secret": "s3cret"}, b"{}")
    assert not secret_presented("s3cret", {"X-Api-Secret": "s3cre"}, b"{}")


def test_segment_signature_header_is_accepted():
    assert secret_presented("key", {"X-Segment-Signature": FOX_KEY_SHA1}, FOX)


def test_no_secret_header_is_refused():
    assert not secret_presented("key", {}, FOX)


def test_one_right_proof_is_enough_beside_wrong_ones():
    assert secret_presented("key", {"X-Api-Secret": "nope", "X-Signature": FOX_KEY_SHA1}, FOX)
    assert secret_presented(
        "key", {"X-Signature": "00" * 20, "X-Segment-Signature": FOX_KEY_SHA1}, FOX
    )
    assert not secret_presented("key", {"X-Api-Secret": "nope", "X-Signature": "00" * 20}, FOX)


def test_a_huge_body_under_both_signature_headers_costs_a_bounded_check():
    """16 MB whose first element never ends, signed under both headers: the first element is
    looked for once, and no further than an event could reach."""
    import time

    body = b'[{"a": "' + b"[{" * (8 * 1024 * 1024) + b'"}]'
    headers = {"X-Signature": "0" * 40, "X-Segment-Signature": "1" * 40}
    started = time.monotonic()
    assert not secret_presented("s3cret", headers, body)
    assert time.monotonic() - started < 1.0
