"""The PostgreSQL fixture's rule when no server answers (tests/qasite/conftest.py, with
``no_server`` from tests/qasite/support.py): skip on a developer's machine, fail under CI."""

from __future__ import annotations

import pytest

from tests.qasite.support import no_server


def test_without_a_server_the_postgresql_tests_skip_outside_ci() -> None:
    with pytest.raises(pytest.skip.Exception, match="no server"):
        no_server("no server", {"CI": "false"})
    with pytest.raises(pytest.skip.Exception, match="no server"):
        no_server("no server", {})


def test_without_a_server_the_postgresql_tests_fail_under_ci() -> None:
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        no_server("no server", {"CI": "true"})
