"""The app's own product table (SQLite through SQLModel), read and written by ProductState's
load/save hooks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlmodel import Field, Session, SQLModel, create_engine, select

from faststate_mw import RecordNotFound

DB_PATH = Path(os.environ.get("EXAMPLE_DB", Path(__file__).with_name("example.db")))
engine = create_engine(f"sqlite:///{DB_PATH}")


class Product(SQLModel, table=True):
    id: str = Field(primary_key=True)
    name: str
    price: float
    stock: int = 0
    likes: int = 0


SEED = [
    Product(id="1", name="Datastar mug", price=12.5, stock=5),
    Product(id="2", name="Signal sticker", price=2.0, stock=100),
    Product(id="3", name="Morphing hoodie", price=49.0, stock=1),
]


def init_db() -> None:
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        if session.exec(select(Product)).first() is None:
            for p in SEED:
                session.add(Product.model_validate(p.model_dump()))
            session.commit()


def load_product(record_id: str) -> dict[str, object]:
    with Session(engine) as session:
        row = session.get(Product, record_id)
        if row is None:
            raise RecordNotFound(f"no product {record_id!r}")
        return row.model_dump(exclude={"id"})


def save_product(state: Any) -> None:
    """ProductState's save hook: its stock and likes back into the row (any object with the
    product's ``identity``, ``stock`` and ``likes``: this module does not import the app)."""
    with Session(engine) as session:
        row = session.get(Product, state.identity)
        if row is None:
            return
        row.stock, row.likes = state.stock, state.likes
        session.add(row)
        session.commit()
