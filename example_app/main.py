"""The seeds' counter page on FastHTML, with a GLOBAL visitors counter.

Run with ``make run``. Settings (environment): FASTSTATE_SECRET (signing key; a fixed dev key
otherwise), FASTSTATE_DATASTAR_JS (a local copy of the Datastar 1.0 client to self-host instead
of loading it from the CDN).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from fasthtml.common import (
    H1,
    H2,
    A,
    Beforeware,
    Button,
    Div,
    Form,
    Header,
    Iframe,
    Input,
    Label,
    Li,
    Link,
    Main,
    Meta,
    Nav,
    NotStr,
    P,
    RedirectResponse,
    Span,
    Strong,
    Title,
    Ul,
    fast_app,
)
from starlette.requests import Request

from example_app.lists import TodoList
from example_app.products import SEED, init_db, load_product, save_product
from faststate_mw import (
    AuthenticationError,
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    UserContext,
    Writable,
    bind,
    client_writable,
    current_request,
    current_session,
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
#: the app's own stylesheet and other static files, served at /<name> (no CDN)
STATIC = Path(__file__).with_name("static")


class Counter(State):
    """Per browser session (the default scope)."""

    count: int = 0  # server-owned (the default): only the events below change it
    message: Annotated[str, client_writable] = "Hello"  # set_message binds the input

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
    display_name: Annotated[str, client_writable] = ""
    # save_bio reads the bound signal, so bio is client-writable, under save_bio's own rule
    bio: Annotated[str, Writable(owner_only=True)] = ""

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
    name: Annotated[str, client_writable] = ""
    email: Annotated[str, client_writable] = ""
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


#: where faststate_mw serves its devtools page (to users with the admin role)
DEVTOOLS = "/_faststate/devtools"

app, rt = fast_app(
    secret_key=SECRET,
    before=Beforeware(auth_beforeware),
    exception_handlers={AuthenticationError: to_login},
    default_hdrs=False,
    hdrs=(
        Meta(name="viewport", content="width=device-width, initial-scale=1"),
        Link(rel="stylesheet", href="/app.css"),
        Link(rel="icon", href="data:,"),  # no icon: browsers stop asking for /favicon.ico (404)
    ),
    static_path=str(STATIC),
    pico=False,
    htmx=False,
    surreal=False,
)
app.add_middleware(
    FastStateMiddleware,
    secret_key=SECRET,
    user_loader=load_user,
    datastar_js=os.environ.get("FASTSTATE_DATASTAR_JS") or None,
    devtools_path=DEVTOOLS,  # admins only: see /devtools
)


init_db()

#: the navigation bar: (label, link, the path prefix its pages share, or None for the link only)
NAV_LINKS: list[tuple[str, str, str | None]] = [
    ("Counter", "/", None),
    ("Profile", "/profile", None),
    ("Widgets", "/widgets", None),
    ("Products", "/product/1", "/product/"),
    ("Wizard", "/wizard", None),
    ("Shared list", "/list/1", "/list/"),
    ("Admin", "/admin", None),
    ("Devtools", "/devtools", None),
    ("Log in", "/login", None),
]


def nav_bar(path: str) -> Any:
    """The top bar; the link of the page shown carries aria-current="page" (and its style)."""

    def item(label: str, href: str, prefix: str | None) -> Any:
        here = path == href or (prefix is not None and path.startswith(prefix))
        return Li(A(label, href=href, aria_current="page" if here else None))

    who = current_session().get("auth")
    return Header(
        Nav(
            A("Fast", Span("State"), href="/", cls="brand"),
            Ul(*(item(*link) for link in NAV_LINKS)),
            Span(*(("Signed in as ", Strong(who)) if who else ("Not signed in",)), cls="whoami"),
            aria_label="Pages",
        ),
        cls="topbar",
    )


HOME_TITLE = "FastState demo"


def layout(title: str, *body: Any, about: str = "") -> tuple[Any, ...]:
    """A page: the nav bar, its title, ``about`` (which scope it shows and what to try in a
    second tab or as another user), its body and the error line."""
    return (
        Title(title if title == HOME_TITLE else f"{title} · {HOME_TITLE}"),
        NotStr(datastar_script()),
        nav_bar(current_request().url.path),
        Main(
            H1(title),
            P(about, cls="about", id="about") if about else "",
            *body,
            Div(error_attrs(), id="error", cls="error"),
        ),
    )


def card(heading: Any, *body: Any, scope: str = "") -> Any:
    """A titled card; ``scope`` is the badge naming the scope its state lives in."""
    return Div(H2(heading, Span(scope, cls="scope") if scope else ""), *body, cls="card")


@rt("/")
def index(counter: Counter, visitors: Visitors) -> Any:
    visitors.visits += 1
    return layout(
        HOME_TITLE,
        counter,
        visitors,
        Div(
            card(
                "Your counter",
                P(Span(text(Counter, "count"), id="count", cls="big")),
                Div(
                    Button("-", on("click", Counter.decrement(1)), id="dec"),
                    Button("Reset", on("click", Counter.reset()), id="reset", cls="secondary"),
                    Button("+", on("click", Counter.increment(1)), id="inc"),
                    cls="row",
                ),
                Div(
                    Input(
                        bind(Counter, "message"),
                        on("change", Counter.set_message()),
                        id="message",
                        aria_label="Message",
                    ),
                    Span(" says: ", cls="muted"),
                    Span(text(Counter, "message"), id="message-echo"),
                    cls="row",
                ),
                scope="SESSION",
            ),
            card(
                "Everybody",
                Div(
                    Div(
                        Span("Visits", cls="label"),
                        Span(text(Visitors, "visits"), id="visits", cls="big"),
                    ),
                    Div(
                        Span("Waves", cls="label"),
                        Span(text(Visitors, "waves"), id="waves", cls="big"),
                    ),
                    cls="stats",
                ),
                Button("Wave", on("click", Visitors.wave()), id="wave"),
                scope="GLOBAL",
            ),
            cls="cards",
        ),
        about="Two scopes: the counter is this browser session's (SESSION), visits and waves are "
        "everybody's (GLOBAL). Try it in a second tab: the counter follows; in a private window "
        "you get a counter of your own, but the same waves.",
    )


@app.get("/login")
def get_login(sess):  # type: ignore[no-untyped-def]
    who = sess.get("auth")
    return layout(
        "Log in",
        Div(
            P(f"Signed in as {who}." if who else "Not signed in.", id="who"),
            Form(
                Label("Your name", fr="username"),
                Div(
                    Input(name="username", id="username", placeholder="username", required=True),
                    Button("Log in", id="login-button"),
                    cls="row",
                ),
                method="post",
                action="/login",
            ),
            Form(
                Button("Log out", id="logout-button", cls="secondary"),
                method="post",
                action="/logout",
            ),
            cls="card",
        ),
        about="No password: any name signs in; \u201cadmin\u201d also has the admin permission. "
        "Try signing in as admin here and as someone else in a private window, then open "
        "Profile and Admin in both.",
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
        card(
            Span("Signed in as ", Span(req.scope.get("auth"), id="user")),
            Label("Display name", fr="display-name"),
            Div(
                Input(bind(Profile, "display_name"), id="display-name"),
                Button("Save name", on("click", Profile.set_display_name()), id="save-name"),
                cls="row",
            ),
            P("Shown as: ", Strong(text(Profile, "display_name"), id="shown-name", cls="value")),
            Label("Bio", fr="bio"),
            Div(
                Input(bind(Profile, "bio"), id="bio"),
                Button("Save bio", on("click", profile.actions.save_bio()), id="save-bio"),
                cls="row",
            ),
            P("Bio: ", Span(text(Profile, "bio"), id="shown-bio", cls="value")),
            scope="USER",
        ),
        about="USER scope: one profile per signed-in user, shared by all of their sessions and "
        "devices. Try signing in with the same name in a private window: a save shows in both; "
        "another name gets a profile of its own.",
    )


@rt("/admin")
def admin_page(settings: Settings) -> Any:
    can_change = Settings.toggle_maintenance.allowed
    return layout(
        "Site settings",
        settings,
        card(
            "Settings",
            Div(
                Div(
                    Span("Maintenance mode", cls="label"),
                    Span(text(Settings, "maintenance"), id="maintenance", cls="flag"),
                ),
                Div(
                    Span("Theme", cls="label"),
                    Span(text(Settings, "theme"), id="theme", cls="flag"),
                ),
                cls="stats",
            ),
            Div(
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
                    cls="secondary",
                ),
                cls="row",
            ),
            P(
                "Only users with the admin permission can change these settings.",
                id="why",
                cls="muted",
                hidden=can_change,
            ),
            scope="GLOBAL \u00b7 AUTH",
        ),
        about="GLOBAL scope with permissions: every signed-in user reads these settings, only "
        "admins may change them. Try it as admin in one window and as another user in a private "
        "window: a toggle shows in both, the other user's buttons stay disabled.",
    )


@rt("/widgets")
def widgets_page() -> Any:
    left, right = Widget.component("left"), Widget.component("right")
    return layout(
        "Two independent widgets",
        Div(
            *(
                card(
                    f"Widget \u201c{w.identity}\u201d",
                    w,
                    P(
                        Span(text(w, "clicks"), id=f"{w.identity}-clicks", cls="big"),
                        Span(" clicks", cls="muted"),
                    ),
                    Button(
                        f"Click {w.identity}",
                        on("click", w.actions.click()),
                        id=f"{w.identity}-btn",
                    ),
                    scope="COMPONENT",
                )
                for w in (left, right)
            ),
            cls="cards",
        ),
        about="COMPONENT scope: two instances of one state on a page, each with its own id, inside "
        "your session. Try clicking one: only it counts; a second tab follows both, a private "
        "window has widgets of its own.",
    )


@rt("/product/{record_id}")
def product_page(product: ProductState, record_id: str) -> Any:
    return layout(
        product.name,
        Nav(
            *(
                A(
                    p.name,
                    href=f"/product/{p.id}",
                    aria_current="page" if p.id == record_id else None,
                )
                for p in SEED
            ),
            cls="pills",
            aria_label="Products",
        ),
        product,
        card(
            "Product",
            P(Span(f"{product.price:.2f}", cls="big"), Span(" price", cls="muted")),
            Div(
                Div(
                    Span("In stock", cls="label"),
                    Span(text(product, "stock"), id="stock", cls="big"),
                ),
                Div(
                    Span("Likes", cls="label"), Span(text(product, "likes"), id="likes", cls="big")
                ),
                cls="stats",
            ),
            Div(
                Button("Like", on("click", product.actions.like()), id="like", cls="secondary"),
                Button("Buy one", on("click", product.actions.buy()), id="buy"),
                cls="row",
            ),
            scope="RECORD",
        ),
        about="RECORD scope: one state per product, shared by everyone on that product and saved "
        "to SQLite. Try opening this product in a private window and buying one: the stock drops "
        "in both; another product is unaffected.",
    )


@rt("/wizard")
def wizard_page(wizard: Wizard) -> Any:
    return layout(
        "Sign-up wizard",
        wizard,
        card(
            Span("Step ", Span(text(Wizard, "step"), id="step"), " of 3", cls="steps"),
            Div(
                Label(
                    "Name ", Input(bind(Wizard, "name"), on("change", Wizard.set_name()), id="name")
                ),
                show(f"{Wizard.ref('step')} === 1"),
            ),
            Div(
                Label(
                    "Email ",
                    Input(bind(Wizard, "email"), on("change", Wizard.set_email()), id="email"),
                ),
                show(f"{Wizard.ref('step')} === 2"),
            ),
            Div(
                P(
                    "Name: ",
                    Strong(text(Wizard, "name")),
                    " email: ",
                    Strong(text(Wizard, "email")),
                ),
                Button("Finish", on("click", Wizard.finish()), id="finish"),
                show(f"{Wizard.ref('step')} === 3"),
                cls="row",
            ),
            Div(
                Button("Back", on("click", Wizard.back()), id="back", cls="secondary"),
                Button("Next", on("click", Wizard.next()), id="next"),
                cls="row",
            ),
            P("Done!", show(Wizard.ref("done")), id="done", cls="done"),
            scope="TEMPORARY",
        ),
        about="TEMPORARY scope: a draft for this session, dropped 15 minutes after its last use. "
        "Try filling in a step and reloading, or opening a second tab: the draft is still there; "
        "a private window starts a fresh one.",
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
        about="RECORD scope with live views: one list per id, shared by everyone on it. Try adding "
        "an item here and watch a second tab, or another browser signed in as someone else, on the "
        "same list; /list/2 is a different list.",
    )


@rt("/devtools")
def devtools_page() -> Any:
    """faststate_mw's devtools page, framed for admins (it refuses everyone else itself)."""
    who = current_session().get("auth") or ""
    admin = "admin" in USERS.get(who, {}).get("roles", [])
    body: tuple[Any, ...] = (
        P("The devtools are for admins: sign in as admin to see them.", id="denied"),
    )
    if admin:
        body = (
            P(A("Open the devtools on their own page", href=DEVTOOLS)),
            Iframe(src=DEVTOOLS, title="faststate_mw devtools", id="devtools", cls="devtools"),
        )
    return layout(
        "Devtools",
        *body,
        about="For admins: every live state, open stream and recent event of this worker, with "
        "each key's history, kept live by faststate_mw's own stream. Try clicking the counter in "
        "another tab: its value, the event and what it changed show here within a second.",
    )
