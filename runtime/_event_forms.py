"""How an event class's instances become their stored data and come back from it.

An event's stored data is exactly its fields (those whose names do not start with ``_``), and
a replay rebuilds it with ``cls(**data)``. Both directions run once per event on the hot
path, so each class gets functions made for it when its ``Aggregate`` is made.
"""

from __future__ import annotations

import dataclasses
import inspect
import keyword
import types
from collections.abc import Callable
from typing import Any, TypeVar

E = TypeVar("E")


def construct(cls: type[E]) -> Callable[[Any], E]:
    def build(data: Any) -> E:
        return cls(**data)

    return build


def fast_construct(cls: type[E]) -> Callable[[Any], E] | None:
    """For a slotted dataclass whose ``__init__`` only stores its arguments: a function that
    builds an instance from its JSON data exactly as ``cls(**data)`` does, about twice as fast.

    A frozen dataclass's ``__init__`` stores each field through ``object.__setattr__``; this
    sets the slots directly (what ``dataclasses.replace`` and copying rely on too). It is used
    only when the data names every field and nothing else; any other data goes to
    ``cls(**data)``, which applies defaults or raises its usual ``TypeError``. None when the
    class does more on construction (``__post_init__``, its own ``__init__`` or ``__new__``,
    init-only or ``init=False`` fields) or keeps a ``__dict__``.
    """
    init = cls.__dict__.get("__init__")
    code = getattr(init, "__code__", None)
    if init is None or code is None or code.co_filename != "<string>":
        return None  # Not the __init__ that dataclasses generated.
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if (
        cls.__dictoffset__ != 0
        or cls.__new__ is not object.__new__
        or hasattr(cls, "__post_init__")
        or not fields
        # Its parameters are exactly the fields: no init-only or init=False ones.
        or list(inspect.signature(init).parameters)[1:] != [each.name for each in fields]
    ):
        return None
    setters = []
    for each in fields:
        descriptor = inspect.getattr_static(cls, each.name, None)
        if not isinstance(descriptor, types.MemberDescriptorType):
            return None
        setters.append(descriptor.__set__)
    names = [each.name for each in fields]
    reads = "; ".join(f"v{index} = data[{name!r}]" for index, name in enumerate(names))
    stores = "; ".join(f"set{index}(event, v{index})" for index in range(len(names)))
    source = (
        "def build(data):\n"
        f"    if data.__class__ is dict and len(data) == {len(names)}:\n"
        "        try:\n"
        f"            {reads}\n"
        "        except KeyError:\n"
        "            pass\n"
        "        else:\n"
        "            event = new(cls)\n"
        f"            {stores}\n"
        "            return event\n"
        "    return cls(**data)\n"
    )
    namespace: dict[str, Any] = {"cls": cls, "new": object.__new__}
    namespace.update({f"set{index}": setter for index, setter in enumerate(setters)})
    exec(source, namespace)
    build: Callable[[Any], E] = namespace["build"]
    return build


def json_form(cls: type[Any]) -> Callable[[Any], Any] | None:
    """A function from an instance of the dataclass ``cls`` to its stored data, or None when
    the instance itself is that data: its fields in order, leaving out names that start with
    ``_`` (as orjson does).

    Invariant: the stored data of an event is exactly its fields, never an attribute that is
    not one (a ``functools.cached_property``, a value ``__post_init__`` sets): a replay
    builds the event from that data with ``cls(**data)``, which refuses any other key. The
    journal encodes the data after ``evolve`` has seen the event, so data that is the event
    itself would take along what ``evolve`` caches on it.

    None (orjson encodes the ``__dict__`` fastest) only when that ``__dict__`` holds exactly
    the fields from construction on: a frozen class that ``_keeps_its_attributes``, whose
    generated ``__init__`` stores every field, without a ``__post_init__`` (which may add
    one; with it, a function checks the ``__dict__`` of each event). Only an
    ``object.__setattr__`` on a live event could then add an attribute (the test kit catches
    ``evolve`` doing so). For a slotted class the dict also makes the write path fast:
    orjson encodes such instances attribute by attribute, several times slower than a dict
    (measured ~0.57 us against ~0.19 us per event).
    """
    fields = dataclasses.fields(cls)
    names = [each.name for each in fields if not each.name.startswith("_")]
    if all(name.isidentifier() and not keyword.iskeyword(name) for name in names):
        items = ", ".join(f"{name!r}: event.{name}" for name in names)
        build: Callable[[Any], dict[str, Any]] = eval(f"lambda event: {{{items}}}")
    else:
        build = _fields_dict(names)
    if cls.__dictoffset__ == 0 or not _init_sets_every_field(cls):
        return build
    count = len(fields)
    if _keeps_its_attributes(cls):
        if not hasattr(cls, "__post_init__"):
            return None

        def event_or_build(event: Any) -> Any:
            return event if len(event.__dict__) == count else build(event)

        return event_or_build
    if len(names) != count:
        return build

    def copy_or_build(event: Any) -> dict[str, Any]:
        # A copy: the event may gain attributes before the journal encodes the data.
        attributes: dict[str, Any] = event.__dict__
        return attributes.copy() if len(attributes) == count else build(event)

    return copy_or_build


def _fields_dict(names: list[str]) -> Callable[[Any], dict[str, Any]]:
    def build(event: Any) -> dict[str, Any]:
        return {name: getattr(event, name) for name in names}

    return build


def _init_sets_every_field(cls: type[Any]) -> bool:
    """Whether constructing ``cls`` stores every one of its fields: its ``__init__`` is the
    one dataclasses generated, and each field is a parameter of it or has a default."""
    init = cls.__dict__.get("__init__")
    code = getattr(init, "__code__", None)
    return (
        code is not None
        and code.co_filename == "<string>"
        and all(
            each.init
            or each.default is not dataclasses.MISSING
            or each.default_factory is not dataclasses.MISSING
            for each in dataclasses.fields(cls)
        )
    )


def _keeps_its_attributes(cls: type[Any]) -> bool:
    """Whether instances of the dataclass ``cls`` gain no attribute after construction, short
    of an ``object.__setattr__``: it is frozen, and its class attributes are data descriptors,
    plain methods and values, none of which writes to an instance's ``__dict__`` (as a
    ``functools.cached_property`` does on first read)."""
    if not cls.__dataclass_params__.frozen:
        return False
    for klass in cls.__mro__[:-1]:
        for name, value in vars(klass).items():
            if name in ("__getattr__", "__getattribute__"):
                return False
            kind = type(value)
            if (
                hasattr(kind, "__get__")
                and not hasattr(kind, "__set__")
                and not isinstance(value, types.FunctionType | staticmethod | classmethod)
            ):
                return False
    return True
