"""One State class per scope, shared by the scope suites (tests/test_scopes.py drives them
through plain Starlette, tests/test_scope_entry_points.py through FastHTML and FastAPI).

Their names are the tests' own: README snippets define ``Product``, ``TenantSettings`` and a
``tenant`` scope, so these use others (two classes of one name, or one scope registered twice,
would warn).
"""

from __future__ import annotations

from typing import Any

from faststate_mw import ScopeRule, State, StateConfig, StateScope, event, register_scope


class Profile(State):
    __faststate__ = StateConfig(scope=StateScope.USER, requires_auth=True)
    bio: str = ""

    @event
    def write(self, bio: str) -> None:
        self.bio = bio


class Widget(State):
    __faststate__ = StateConfig(scope=StateScope.COMPONENT)
    count: int = 0

    @event
    def increment(self) -> None:
        self.count += 1


class Listing(State):
    __faststate__ = StateConfig(scope=StateScope.RECORD)
    likes: int = 0

    @event
    def like(self) -> None:
        self.likes += 1


class Draft(State):
    __faststate__ = StateConfig(scope=StateScope.TEMPORARY)
    step: int = 1

    @event
    def next_step(self) -> None:
        self.step += 1


class SiteScope(ScopeRule):
    """A custom scope: one instance per site, named by the ``x-site`` header or the host."""

    name = "site"

    def owner(self, ctx: Any) -> str | None:
        return ctx.request.headers.get("x-site") or ctx.request.url.hostname


register_scope(SiteScope())


class SiteTheme(State):
    __faststate__ = StateConfig(scope="site")
    theme: str = "light"
