"""Property-based requests generated from the OpenAPI document (schemathesis): whatever they
hold, no endpoint answers 5xx, and every error is JSON with a message."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

EXAMPLES_PER_OPERATION = 40


@pytest.fixture
def operations(app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


def test_no_operation_answers_5xx_to_generated_requests(operations, account):
    assert len(operations) >= 15, "the OpenAPI document lost operations"
    for operation in operations:
        check_operation(operation, account)


def check_operation(operation, account):
    @given(case=operation.as_strategy())
    @hypothesis_settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def no_server_error(case):
        if "api_key" in (case.path_parameters or {}):
            case.path_parameters["api_key"] = account.api_key  # reach past authentication
        response = case.call(headers={"Authorization": f"Bearer {account.admin_token}"})
        assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])
        if response.status_code >= 400:
            assert response.json()["message"], (case.method, case.formatted_path)

    no_server_error()
