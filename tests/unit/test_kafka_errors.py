"""Which client errors end a Kafka wait at once, and the setting their message names."""

from confluent_kafka import KafkaError

from operators.kafka.topics import explain, is_permanent

UNTRUSTED = (
    "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: "
    "broker certificate could not be verified, verify that ssl.ca.location is correctly configured"
)


def test_an_untrusted_broker_certificate_is_permanent_and_names_the_ca_setting() -> None:
    error = KafkaError(KafkaError._SSL, UNTRUSTED)
    assert is_permanent(error)
    assert explain(error).startswith("the broker's certificate is not signed by a CA this client trusts; ")
    assert "KAFKA_PROP_SSL_CA_LOCATION" in explain(error)
    assert explain(error).endswith(f"({UNTRUSTED})")


def test_other_ssl_and_transport_errors_stay_retriable_with_their_own_text() -> None:
    for error in (
        KafkaError(KafkaError._SSL, "SSL handshake failed: Disconnected"),
        KafkaError(KafkaError._TRANSPORT, "Connection refused"),
    ):
        assert not is_permanent(error)
        assert explain(error) == error.str()


def test_authentication_failures_stay_permanent() -> None:
    assert is_permanent(KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: Authentication failed"))
