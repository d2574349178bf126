"""How a State class is configured (_config.py): mistakes in a class's configuration are
errors when the class is defined, not at its first request."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import Field

from faststate_mw import (
    ConfigurationError,
    State,
    StateConfig,
    StateScope,
    client_writable,
    event,
)
from faststate_mw._config import info_of


def test_user_state_must_require_auth() -> None:
    with pytest.raises(ConfigurationError, match="requires_auth"):

        class LooseUserState(State):
            __faststate__ = StateConfig(scope=StateScope.USER)
            x: int = 0


def test_unknown_scope_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown scope"):
        StateConfig(scope="planet")


def test_event_signature_errors_at_definition() -> None:
    with pytest.raises(ConfigurationError):

        class Bad(State):
            @event
            def f(self, *args: int) -> None:
                pass

    with pytest.raises(ConfigurationError):

        class Bad2(State):
            @event(method="BREW")
            def f(self) -> None:
                pass


def test_all_fields_are_the_model_fields() -> None:
    class ConfigAllFields(State):
        public: int = 0
        draft: Annotated[str, client_writable] = ""
        _private: int = 0
        hidden: str = Field(default="", exclude=True)

    info = info_of(ConfigAllFields)
    assert info.all_fields == set(ConfigAllFields.model_fields) == {"public", "draft", "hidden"}
