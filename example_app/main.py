"""The seeds' counter page on FastHTML, with a GLOBAL visitors counter.

Run with ``make run``. Settings (environment): FASTSTATE_SECRET (signing key; a fixed dev key
otherwise), FASTSTATE_DATASTAR_JS (a local copy of the Datastar 1.0 client to self-host instead
of loading it from the CDN).
"""

from __future__ import annotations

import os
from typing import Any

from fasthtml.common import (
    H1,
    H2,
    A,
    Beforeware,
    Button,
    Div,
    Form,
    Input,
    Label,
    Li,
    Main,
    Nav,
    NotStr,
    P,
    RedirectResponse,
    Span,
    Title,
    Ul,
    fast_app,
)
from starlette.requests import Request

from example_app.lists import TodoList
from example_app.products import init_db, load_product, save_product
from faststate_mw import (
    AuthenticationError,
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    UserContext,
    bind,
    datastar_script,
    error_attrs,
    event,
    expr,
    on,
    requires_auth,
    show,
    text,
)

SECRET = os.environ.get("FASTSTATE_SECRET", "dev-only-secret-change-me")


class Counter(State):
    """Per browser session (the default scope)."""

    count: int = 0
    message: str = "Hello"

    @event
    def increment(self, amount: int = 1) -> None:
        self.count += amount

    @event
    def decrement(self, amount: int = 1) -> None:
        self.count -= amount

    @event
    def reset(self) -> None:
        self.count = 0


class Visitors(State):
    """One instance for everybody."""

    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    visits: int = 0
    waves: int = 0

    @event
    def wave(self) -> None:
        self.waves += 1


class Profile(State):
    """One per signed-in user, shared by all of their sessions and devices."""

    __faststate__ = StateConfig(scope=StateScope.USER, requires_auth=True)
    user_id: str = ""  # filled with the signed-in user's id when the profile is created
    display_name: str = ""
    bio: str = ""

    @event(owner_only=True)
    def save_bio(self, bio: str) -> None:
        self.bio = bio.strip()[:500]


class Settings(State):
    """Site-wide settings: every signed-in user may read them, only admins may change them."""

    __faststate__ = StateConfig(scope=StateScope.GLOBAL, requires_auth=True)
    theme: str = "light"
    maintenance: bool = False

    @event
    @requires_auth(permissions=["admin"])
    def toggle_maintenance(self) -> None:
        self.maintenance = not self.maintenance

    @event(permissions=["admin"])
    def toggle_theme(self) -> None:
        self.theme = "dark" if self.theme == "light" else "light"


class Widget(State):
    """Several independent instances on one page (COMPONENT scope)."""

    __faststate__ = StateConfig(scope=StateScope.COMPONENT)
    clicks: int = 0

    @event
    def click(self) -> None:
        self.clicks += 1


class ProductState(State):
    """One per product, shared by everyone on that product page; backed by the SQLite table."""

    __faststate__ = StateConfig(
        scope=StateScope.RECORD, name="Product", load=load_product, save=save_product
    )
    name: str = ""
    price: float = 0.0
    stock: int = 0
    likes: int = 0

    @event
    def like(self) -> None:
        self.likes += 1

    @event
    def buy(self) -> None:
        if self.stock > 0:
            self.stock -= 1


class Wizard(State):
    """A multi-step form draft (TEMPORARY scope: dropped 15 minutes after its last use)."""

    __faststate__ = StateConfig(scope=StateScope.TEMPORARY)
    step: int = 1
    name: str = ""
    email: str = ""
    done: bool = False

    @event
    def next(self) -> None:
        self.step = min(self.step + 1, 3)

    @event
    def back(self) -> None:
        self.step = max(self.step - 1, 1)

    @event
    def finish(self) -> None:
        self.done = True


#: The app's own user store: who has which roles and permissions (the admin role would grant
#: every permission anyway; "admin" is spelled out to show permissions).
USERS: dict[str, dict[str, list[str]]] = {
    "admin": {"roles": ["admin"], "permissions": ["admin"]},
}


async def load_user(scope: Any) -> UserContext | None:
    """faststate user_loader: the name the beforeware (pages) or the session (events) carries,
    with roles and permissions from the app's store (async, as a database lookup would be)."""
    name = scope.get("auth") or (scope.get("session") or {}).get("auth")
    if not name:
        return None
    record = USERS.get(name, {})
    return UserContext(
        id=name,
        username=name,
        roles=record.get("roles", []),
        permissions=record.get("permissions", []),
    )


def auth_beforeware(req, sess):  # type: ignore[no-untyped-def]  # FastHTML injects by name
    """The seeds' pattern: copy the signed-in user from the session to scope["auth"]."""
    req.scope["auth"] = sess.get("auth")


async def to_login(request: Request, exc: Exception) -> RedirectResponse:
    """Pages that need a user send anonymous visitors to the login page."""
    return RedirectResponse("/login", status_code=303)


app, rt = fast_app(
    secret_key=SECRET,
    before=Beforeware(auth_beforeware),
    exception_handlers={AuthenticationError: to_login},
    default_hdrs=False,
    pico=False,
    htmx=False,
    surreal=False,
)
app.add_middleware(
    FastStateMiddleware,
    secret_key=SECRET,
    user_loader=load_user,
    datastar_js=os.environ.get("FASTSTATE_DATASTAR_JS") or None,
)


init_db()

NAV = Nav(
    Ul(
        Li(A("Counter", href="/")),
        Li(A("Profile", href="/profile")),
        Li(A("Widgets", href="/widgets")),
        Li(A("Products", href="/product/1")),
        Li(A("Wizard", href="/wizard")),
        Li(A("Shared list", href="/list/1")),
        Li(A("Admin", href="/admin")),
        Li(A("Log in", href="/login")),
    )
)


def layout(title: str, *body: Any) -> tuple[Any, ...]:
    return (
        Title(title),
        NotStr(datastar_script()),
        Main(NAV, H1(title), *body, Div(error_attrs(), id="error", cls="error")),
    )


@rt("/")
def index(counter: Counter, visitors: Visitors) -> Any:
    visitors.visits += 1
    return layout(
        "FastState demo",
        counter,
        visitors,
        H2("Your counter (this session)"),
        P("Count: ", Span(text(Counter, "count"), id="count")),
        Div(
            Button("-", on("click", Counter.decrement(1)), id="dec"),
            Button("0", on("click", Counter.reset()), id="reset"),
            Button("+", on("click", Counter.increment(1)), id="inc"),
        ),
        P(
            Input(bind(Counter, "message"), on("change", Counter.set_message()), id="message"),
            " says: ",
            Span(text(Counter, "message"), id="message-echo"),
        ),
        H2("Everybody (global)"),
        P("Visits: ", Span(text(Visitors, "visits"), id="visits")),
        P("Waves: ", Span(text(Visitors, "waves"), id="waves")),
        Button("Wave", on("click", Visitors.wave()), id="wave"),
    )


@app.get("/login")
def get_login(sess):  # type: ignore[no-untyped-def]
    who = sess.get("auth")
    return layout(
        "Log in",
        P(f"Signed in as {who}." if who else "Not signed in.", id="who"),
        Form(
            Input(name="username", id="username", placeholder="username", required=True),
            Button("Log in", id="login-button"),
            method="post",
            action="/login",
        ),
        Form(Button("Log out", id="logout-button"), method="post", action="/logout"),
    )


@app.post("/login")
def post_login(sess, username: str):  # type: ignore[no-untyped-def]
    sess["auth"] = username.strip()[:64] or None
    return RedirectResponse("/profile", status_code=303)


@app.post("/logout")
def post_logout(sess):  # type: ignore[no-untyped-def]
    sess.pop("auth", None)
    return RedirectResponse("/login", status_code=303)


@rt("/profile")
def profile_page(profile: Profile, req: Request) -> Any:
    return layout(
        "Your profile",
        profile,
        P("Signed in as ", Span(req.scope.get("auth"), id="user")),
        Label("Display name ", Input(bind(Profile, "display_name"), id="display-name")),
        Button("Save name", on("click", Profile.set_display_name()), id="save-name"),
        P("Shown as: ", Span(text(Profile, "display_name"), id="shown-name")),
        Label("Bio ", Input(bind(Profile, "bio"), id="bio")),
        Button("Save bio", on("click", profile.actions.save_bio()), id="save-bio"),
        P("Bio: ", Span(text(Profile, "bio"), id="shown-bio")),
    )


@rt("/admin")
def admin_page(settings: Settings) -> Any:
    can_change = Settings.toggle_maintenance.allowed
    return layout(
        "Site settings",
        settings,
        P("Maintenance mode: ", Span(text(Settings, "maintenance"), id="maintenance")),
        P("Theme: ", Span(text(Settings, "theme"), id="theme")),
        Button(
            "Toggle maintenance",
            on("click", Settings.toggle_maintenance()),
            id="toggle-maintenance",
            disabled=not can_change,
        ),
        Button(
            "Toggle theme",
            on("click", Settings.toggle_theme()),
            id="toggle-theme",
            disabled=not can_change,
        ),
        P(
            "Only users with the admin permission can change these settings.",
            id="why",
            hidden=can_change,
        ),
    )


@rt("/widgets")
def widgets_page() -> Any:
    left, right = Widget.component("left"), Widget.component("right")
    return layout(
        "Two independent widgets",
        *(
            Div(
                w,
                Span(text(w, "clicks"), id=f"{w.identity}-clicks"),
                Button(
                    f"Click {w.identity}", on("click", w.actions.click()), id=f"{w.identity}-btn"
                ),
            )
            for w in (left, right)
        ),
    )


@rt("/product/{record_id}")
def product_page(product: ProductState, record_id: str) -> Any:
    return layout(
        product.name,
        product,
        P("Price: ", Span(f"{product.price:.2f}")),
        P("In stock: ", Span(text(product, "stock"), id="stock")),
        P("Likes: ", Span(text(product, "likes"), id="likes")),
        Button("Like", on("click", product.actions.like()), id="like"),
        Button("Buy one", on("click", product.actions.buy()), id="buy"),
    )


@rt("/wizard")
def wizard_page(wizard: Wizard) -> Any:
    return layout(
        "Sign-up wizard",
        wizard,
        P("Step ", Span(text(Wizard, "step"), id="step"), " of 3"),
        Div(
            Label("Name ", Input(bind(Wizard, "name"), on("change", Wizard.set_name()), id="name")),
            show(f"{Wizard.ref('step')} === 1"),
        ),
        Div(
            Label(
                "Email ", Input(bind(Wizard, "email"), on("change", Wizard.set_email()), id="email")
            ),
            show(f"{Wizard.ref('step')} === 2"),
        ),
        Div(
            P("Name: ", Span(text(Wizard, "name")), " email: ", Span(text(Wizard, "email"))),
            Button("Finish", on("click", Wizard.finish()), id="finish"),
            show(f"{Wizard.ref('step')} === 3"),
        ),
        Button("Back", on("click", Wizard.back()), id="back"),
        Button("Next", on("click", Wizard.next()), id="next"),
        P("Done!", show(Wizard.ref("done")), id="done"),
    )


@rt("/list/{record_id}")
def list_page(todo: TodoList, record_id: str) -> Any:
    """A shared list, live in every tab through its views (see example_app/lists.py)."""
    return layout(
        f"Shared list {record_id}",
        todo,
        todo.you_view(),
        todo.items_view(),
        Input(bind(todo, "draft"), id="draft", placeholder="New item"),
        Button("Add", on("click", todo.actions.add(text=expr(todo.ref("draft")))), id="add"),
    )
