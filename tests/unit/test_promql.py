"""The PromQL name and label extractor the dashboard and alert coverage checks rely on."""

import pytest

from tests.promql import LabelUse, PromQLError, Selector, references


def test_a_bare_selector_and_one_with_matchers() -> None:
    refs = references('up{job="loginflow", instance!~"a.*"} == 0')
    assert refs.selectors == (Selector("up", (("job", "=", "loginflow"), ("instance", "!~", "a.*"))),)
    assert refs.labels == ()
    assert references("loginflow_open_windows").selectors == (Selector("loginflow_open_windows"),)


def test_functions_ranges_durations_and_grafana_variables_are_not_metrics() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(x_bucket{job=~"$job"}[$__rate_interval])))'
        " / deriv(y[10m]) + max_over_time(z[1h:1m] offset 5m) * 1e3 > bool inf"
    )
    assert references(expr).names == {"x_bucket", "y", "z"}


def test_grouping_labels_apply_to_the_metrics_inside_their_aggregation() -> None:
    refs = references("sum by (partition) (rate(a_total[5m])) > 0.01 * sum without (reason, slice) (b_total)")
    assert refs.labels == (
        LabelUse("partition", frozenset({"a_total"})),
        LabelUse("reason", frozenset({"b_total"})),
        LabelUse("slice", frozenset({"b_total"})),
    )


def test_a_trailing_by_clause_is_read_too() -> None:
    refs = references("max(changes(w[5m])) by (instance) == 0")
    assert refs.labels == (LabelUse("instance", frozenset({"w"})),)


def test_nested_aggregations_keep_their_own_scope() -> None:
    refs = references("count by (alertname) (sum by (alertname, job) (ALERTS) > 0 and on (job) up)")
    assert LabelUse("alertname", frozenset({"ALERTS", "up"})) in refs.labels
    assert LabelUse("job", frozenset({"ALERTS"})) in refs.labels
    # A vector match applies to both sides: every metric of the expression.
    assert LabelUse("job", frozenset({"ALERTS", "up"})) in refs.labels


def test_strings_with_braces_and_escapes_are_one_value() -> None:
    (selector,) = references(r'x{reason="too_long:\"ip\"", slice=~"user_id\\+ip|{a}"}').selectors
    assert selector.matchers == (("reason", "=", 'too_long:"ip"'), ("slice", "=~", r"user_id\+ip|{a}"))


@pytest.mark.parametrize(
    "expr",
    [
        '{__name__="x"}',  # no metric name to check
        "sum by (a (x)",  # unbalanced
        "rate(x[5m)",  # an unclosed range
        'x{a="1" b}',  # a broken matcher
        "sum by (a + b) (x)",  # not a label list
        "x ? y",  # not PromQL
    ],
)
def test_what_it_cannot_read_raises(expr: str) -> None:
    with pytest.raises(PromQLError):
        references(expr)
