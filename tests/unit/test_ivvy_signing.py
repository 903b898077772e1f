"""iVvy signing against the vendor's published known-answer vector."""

from batchbridge.providers.ivvy_signing import content_md5, sign_request, string_to_sign

BODY = b'{"example":"body"}'


def test_body_md5_matches_the_published_value():
    assert content_md5(BODY) == "a09f600c77a6dbd947db24c61e8935ca"
    assert content_md5(b"") == "d41d8cd98f00b204e9800998ecf8427e"


def test_string_to_sign_matches_the_published_vector():
    # Given the documented request
    # When the string to sign is built
    result = string_to_sign(
        body_md5=content_md5(BODY),
        content_type="application/json",
        request_uri="/api/1.0/test?action=ping",
        ivvy_headers={"IVVY-Date": "2012-04-03 22:23:24", "Content-Type": "ignored"},
    )
    # Then it is exactly iVvy's
    assert result == (
        "posta09f600c77a6dbd947db24c61e8935caapplication/json/api/1.0/test?action=ping1.0"
        "ivvydate=2012-04-03 22:23:24"
    )


def test_signature_matches_the_published_vector():
    signature = sign_request(
        secret="foo",
        body=BODY,
        content_type="application/json",
        request_uri="/api/1.0/test?action=ping",
        ivvy_headers={"IVVY-Date": "2012-04-03 22:23:24"},
    )
    assert signature == "8c7a8f2bcd32aa06d9c4097653bee4106b64fe81"


def test_a_different_secret_gives_a_different_signature():
    kwargs = dict(
        body=BODY,
        content_type="application/json",
        request_uri="/api/1.0/test?action=ping",
        ivvy_headers={"IVVY-Date": "2012-04-03 22:23:24"},
    )
    assert sign_request(secret="bar", **kwargs) != sign_request(secret="foo", **kwargs)
