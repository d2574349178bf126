"""Common mistakes get a clear error or warning that names the fix (README, "Troubleshooting")."""

from __future__ import annotations

import logging
import types
from typing import Any

import pytest
from fasthtml.common import Button, Div, NotStr, fast_app
from pydantic import ConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate_mw import (
    DATASTAR_CDN,
    AuthenticationError,
    ConfigurationError,
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    StateStore,
    UserContext,
    UserError,
    datastar_script,
    event,
    on,
)
from faststate_mw._config import info_of
from faststate_mw.testing import isolated_state_names
from tests.conftest import API, DS
from tests.sse import patched_signals


def define_in(module: str, source: str) -> dict[str, Any]:
    """Run ``source`` as the module ``module`` (its classes get that ``__module__``)."""
    namespace: dict[str, Any] = {"__name__": module, "State": State, "StateConfig": StateConfig}
    exec(compile(source, f"<{module}>", "exec"), namespace)
    return namespace


# -- two State classes with one name --------------------------------------------------------------
def test_two_classes_with_one_name_in_two_modules_fail_at_definition() -> None:
    with isolated_state_names():
        define_in("shop.cart", "class Trolley(State):\n    items: int = 0\n")
        with pytest.raises(ConfigurationError, match=r"StateConfig\(name=") as err:
            define_in("blog.cart", "class Trolley(State):\n    posts: int = 0\n")
        assert "shop.cart.Trolley" in str(err.value) and "blog.cart.Trolley" in str(err.value)
        # a distinct public name is the fix
        other = define_in(
            "blog.cart",
            "class Trolley(State):\n"
            "    __faststate__ = StateConfig(name='BlogTrolley')\n"
            "    posts: int = 0\n",
        )
        assert other["Trolley"].__faststate_info__.name == "BlogTrolley"


def test_the_same_class_defined_again_takes_its_name_over() -> None:
    with isolated_state_names():
        first = define_in("app.states", "class Tally(State):\n    n: int = 0\n")["Tally"]
        again = define_in("app.states", "class Tally(State):\n    n: int = 0\n")["Tally"]
        assert first is not again  # a reload: allowed, the newest class owns the name
        from faststate_mw._config import catalog

        assert catalog.class_named("Tally") is again


# -- an unknown argument in an event URL ---------------------------------------------------------
class Purse(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    amount: int = 0

    @event
    def add(self, amount: int = 1) -> None:
        self.amount += amount

    @event(method="GET")
    def peek(self, n: int = 0) -> None:
        pass


class Shelf(State):
    __faststate__ = StateConfig(scope=StateScope.RECORD)
    likes: int = 0

    @event
    def like(self) -> None:
        self.likes += 1


def api_app(store: StateStore) -> Starlette:
    app = Starlette()
    app.add_middleware(FastStateMiddleware, secret_key="k", store=store)
    return app


def test_an_unknown_argument_is_a_422_and_changes_nothing(store: StateStore) -> None:
    client = TestClient(api_app(store))
    r = client.post("/_faststate/Purse/add?amout=5", headers=API, content=b"{}")
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_arguments"
    assert "amout" in error["message"] and "amount" in error["message"]  # names the fix
    assert error["detail"] == [{"arg": "amout", "error": "unknown argument"}]
    assert store.get("global:Purse") is None or store.get("global:Purse").amount == 0  # type: ignore[union-attr]
    # the page sees it too
    r = client.post("/_faststate/Purse/add?amout=5", headers=DS, content=b"{}")
    assert patched_signals(r.text)[0]["_faststate"]["status"] == 422
    # the right name works
    r = client.post("/_faststate/Purse/add?amount=5", headers=API, content=b"{}")
    assert r.status_code == 200 and patched_signals(r.text) == [{"purse": {"amount": 5}}]


def test_ids_and_datastars_own_query_are_known_names(store: StateStore) -> None:
    client = TestClient(api_app(store))
    r = client.post("/_faststate/Shelf/like?record_id=7", headers=API, content=b"{}")
    assert r.status_code == 200
    r = client.get('/_faststate/Purse/peek?n=1&datastar={"purse":{"amount":0}}', headers=API)
    assert r.status_code == 204
    assert client.get("/_faststate/Purse/peek?m=1", headers=API).status_code == 422


# -- FastHTML parameters named like the session --------------------------------------------------
class MistakeBasket(State):
    items: int = 0


@pytest.mark.parametrize("name", ["s", "sess", "session", "Se"])
def test_a_state_parameter_named_like_the_session_fails_at_startup(name: str) -> None:
    app, rt = fast_app(pico=False)
    app.add_middleware(FastStateMiddleware, secret_key="k")

    def page(**kwargs: Any) -> Any:
        return Div("x")

    page.__signature__ = _signature(name, MistakeBasket)  # type: ignore[attr-defined]
    page.__name__ = "cart"
    rt("/cart")(page)
    with pytest.raises(ConfigurationError) as err, TestClient(app):
        pass
    message = str(err.value)
    assert "/cart" in message and repr(name) in message and "Rename the parameter" in message


def test_well_named_state_and_user_parameters_start(store: StateStore) -> None:
    app, rt = fast_app(pico=False)
    app.add_middleware(
        FastStateMiddleware, secret_key="k", store=store, user_loader=lambda scope: "ann"
    )

    @rt("/")
    def index(basket: MistakeBasket, user: UserContext) -> Any:
        return Div(f"{basket.items}:{user.id}")

    with TestClient(app) as client:
        assert "0:ann" in client.get("/").text


def test_user_context_injection_needs_a_signed_in_user(store: StateStore) -> None:
    app, rt = fast_app(pico=False)
    app.add_middleware(FastStateMiddleware, secret_key="k", store=store)

    @rt("/")
    def index(user: UserContext) -> Any:
        return Div(user.id)

    with TestClient(app) as client:
        assert client.get("/").status_code == 401


def _signature(name: str, anno: type) -> Any:
    import inspect

    param = inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=anno)
    return inspect.Signature([param])


# -- a page without the Datastar client ---------------------------------------------------------
class Lamp(State):
    on: bool = False


def page_app(store: StateStore, head: str = "", **options: Any) -> Starlette:
    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(f"<html><head>{head}</head><body>{Lamp.current().to_html()}</body>")

    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(FastStateMiddleware, secret_key="k", store=store, **options)
    return app


def test_a_page_without_the_client_gets_it(store: StateStore, tmp_path: Any) -> None:
    html = TestClient(page_app(store)).get("/").text
    assert html.count("<script") == 1 and f'src="{DATASTAR_CDN}"' in html
    js = tmp_path / "datastar.js"
    js.write_text("// Datastar v1.0.1")
    response = TestClient(page_app(StateStore(), datastar_js=js)).get("/")
    assert response.text.count('<script type="module" src="/_faststate/datastar.js">') == 1
    assert int(response.headers["content-length"]) == len(response.content)


def test_inject_client_false_adds_no_client(store: StateStore) -> None:
    html = TestClient(page_app(store, inject_client=False)).get("/").text
    assert "<script" not in html and 'id="faststate-stream"' in html


def test_a_page_with_the_client_gets_no_second_one(store: StateStore) -> None:
    html = TestClient(page_app(store, head=datastar_script())).get("/").text
    assert html.count("<script") == 1
    own = '<script type="module" src="/static/datastar.js"></script>'
    html = TestClient(page_app(StateStore(), head=own)).get("/").text
    assert html.count("<script") == 1


def test_datastar_script_outside_a_request_follows_each_apps_setting(tmp_path: Any) -> None:
    tag = datastar_script()  # e.g. FastHTML hdrs=, built before any request
    assert tag == '<script type="module" src="/_faststate/datastar.js"></script>'
    js = tmp_path / "datastar.js"
    js.write_text("// Datastar v1.0.1 self-hosted")
    hosting = TestClient(page_app(StateStore(), datastar_js=js))
    cdn = TestClient(page_app(StateStore()), follow_redirects=False)
    assert hosting.get("/_faststate/datastar.js").text == "// Datastar v1.0.1 self-hosted"
    r = cdn.get("/_faststate/datastar.js")
    assert r.status_code == 307 and r.headers["location"] == DATASTAR_CDN


# -- hyphenated Datastar event attributes ------------------------------------------------------
def test_hyphenated_event_attributes_warn_in_debug(
    store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    bad = '<button data-on-click="@post(\'/x\')" data-on-intersect="1">x</button>'
    with caplog.at_level(logging.WARNING, logger="faststate_mw"):
        TestClient(page_app(store, head=bad, debug=True)).get("/")
    warned = [r.getMessage() for r in caplog.records if "hyphenated" in r.getMessage()]
    assert len(warned) == 1 and "data-on-click" in warned[0] and "data-on:click" in warned[0]
    assert "data-on-intersect" not in warned[0]  # a real Datastar 1.0 attribute
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="faststate_mw"):
        TestClient(page_app(StateStore(), head=bad)).get("/")  # not in debug
        good = str(Button("+", on("click", "@post('/x')")))
        TestClient(page_app(StateStore(), head=good, debug=True)).get("/")
    assert not [r for r in caplog.records if "hyphenated" in r.getMessage()]


def test_fasthtml_data_on_click_warns_when_the_app_runs_in_debug(
    store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    app, rt = fast_app(pico=False, debug=True)
    app.add_middleware(FastStateMiddleware, secret_key="k", store=store)

    @rt("/")
    def index(lamp: Lamp) -> Any:
        return Div(NotStr(datastar_script()), lamp, Button("x", data_on_click="@post('/x')"))

    with caplog.at_level(logging.WARNING, logger="faststate_mw"):
        TestClient(app).get("/")
    assert any("data-on-click" in r.getMessage() for r in caplog.records)


# -- types that need arbitrary_types_allowed -----------------------------------------------------
class Point:
    def __init__(self, x: int = 0) -> None:
        self.x = x


def test_arbitrary_types_follow_the_models_config() -> None:
    with isolated_state_names():

        class Canvas(State):
            model_config = ConfigDict(arbitrary_types_allowed=True)
            __faststate__ = StateConfig(writable=("origin",))
            origin: Point = Point()

            @event
            def move(self, to: Point) -> None:
                self.origin = to

        spec = Canvas.__faststate_events__["move"]
        assert spec.params[0].validate(Point(3)).x == 3
        assert "set_origin" in Canvas.__faststate_events__

        with pytest.raises(ConfigurationError, match="arbitrary_types_allowed=True"):

            class Sketch(State):
                @event
                def move(self, to: Point) -> None:
                    pass


# -- a message for the user ------------------------------------------------------------------------
class Stock(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    left: int = 1

    @event
    def buy(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise UserError("Sold out: try again tomorrow")

    @event
    def crash(self) -> None:
        self.left = 99
        raise ValueError("database password is hunter2")


def test_user_error_reaches_the_page_and_rolls_back(store: StateStore) -> None:
    client = TestClient(api_app(store))
    client.post("/_faststate/Stock/buy", headers=API, content=b"{}")
    r = client.post("/_faststate/Stock/buy", headers=DS, content=b"{}")
    error = patched_signals(r.text)[0]["_faststate"]
    assert error == {"error": "Sold out: try again tomorrow", "status": 400, "code": "user_error"}
    r = client.post("/_faststate/Stock/buy", headers=API, content=b"{}")
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("Sold out")
    stock = store.get("global:Stock")
    assert isinstance(stock, Stock) and stock.left == 0


def test_other_exceptions_stay_internal(store: StateStore) -> None:
    client = TestClient(api_app(store))
    r = client.post("/_faststate/Stock/crash", headers=DS, content=b"{}")
    error = patched_signals(r.text)[0]["_faststate"]
    assert error["code"] == "event_failed" and "hunter2" not in r.text


# -- the audit log: real denials only ------------------------------------------------------------
class Strongbox(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL, requires_auth=True, roles=("banker",))
    gold: int = 0

    @event
    def take(self) -> None:
        self.gold -= 1


def vault_app(store: StateStore) -> Starlette:
    async def page(request: Request) -> JSONResponse:
        return JSONResponse(Strongbox.current().public_data())

    async def to_login(request: Request, exc: Exception) -> HTMLResponse:
        return HTMLResponse("login", status_code=303, headers={"location": "/login"})

    def loader(scope: Any) -> Any:
        return {"id": "carol"} if scope.get("query_string") == b"as=carol" else None

    app = Starlette(routes=[Route("/", page)], exception_handlers={AuthenticationError: to_login})
    app.add_middleware(FastStateMiddleware, secret_key="k", store=store, user_loader=loader)
    return app


def test_a_signed_out_page_visit_is_info_a_real_denial_a_warning(
    store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    client = TestClient(vault_app(store), follow_redirects=False)
    with caplog.at_level(logging.DEBUG, logger="faststate_mw.audit"):
        assert client.get("/").status_code == 303
        assert client.get("/?as=carol").status_code == 403
        client.post("/_faststate/Strongbox/take", headers=API, content=b"{}")
    audit = [r for r in caplog.records if r.name == "faststate_mw.audit"]
    levels = [(r.levelname, "user=carol" in r.getMessage()) for r in audit]
    assert levels == [("INFO", False), ("WARNING", True), ("WARNING", False)]


def test_public_names() -> None:
    import faststate_mw

    assert isinstance(faststate_mw, types.ModuleType) and "UserError" in faststate_mw.__all__


# -- the signed-in user in FastAPI ---------------------------------------------------------------
def test_fastapi_depends_current_user(store: StateStore) -> None:
    from fastapi import Depends, FastAPI

    from faststate_mw import current_user

    api = FastAPI()

    def loader(scope: Any) -> Any:
        return {"id": "dana", "roles": ["editor"]} if scope.get("query_string") else None

    api.add_middleware(FastStateMiddleware, secret_key="k", store=store, user_loader=loader)

    @api.get("/")
    def whoami(user: UserContext | None = Depends(current_user)) -> dict[str, Any]:
        return {"user": user.id if user else None, "editor": bool(user and user.has_role("editor"))}

    client = TestClient(api)
    assert client.get("/").json() == {"user": None, "editor": False}
    assert client.get("/?me=1").json() == {"user": "dana", "editor": True}


def test_a_subclass_never_described_is_a_clear_error_not_its_parents_rules() -> None:
    """An app's __pydantic_init_subclass__ that skips super() leaves its subclasses without a
    description of their own: they must not serve with the parent's scope and auth rule."""
    with isolated_state_names():

        class Forgetful(State):
            x: int = 0

            @classmethod
            def __pydantic_init_subclass__(cls, **kw: Any) -> None:
                pass  # forgets super(): State never describes the subclasses

        class Guarded(Forgetful):
            __faststate__ = StateConfig(scope=StateScope.USER, requires_auth=True)

        with pytest.raises(ConfigurationError, match="Guarded was never described"):
            info_of(Guarded).auth  # noqa: B018
