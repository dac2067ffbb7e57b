"""What to say about a stored event type that an aggregate cannot read.

A stored type is ``"<aggregate>.<event name>/<version>"``. It is unknown for one of three
reasons, each with its own remedy: its event name is not registered (any more), its version
is older than the registered one with no upcaster from it, or its version is newer than the
registered one: an event written by a later version of the application, which this one
cannot read (a rollback after a deploy that bumped the event's version). A version that the
runtime never writes ("03", "0") is none of these, and said so.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._exceptions import UnknownEventType


def unknown_event_type(
    aggregate: str, type_name: str, written: Iterable[str], readable: Iterable[str]
) -> UnknownEventType:
    """The error for ``type_name``, given the type names the aggregate writes (one per event
    name, at its current version) and those it reads."""
    base, _, version_text = type_name.rpartition("/")
    event_name = base.removeprefix(f"{aggregate}.")
    current = {each.rpartition("/")[0]: int(each.rpartition("/")[2]) for each in written}.get(base)
    known = ", ".join(sorted(readable))
    start = f"stored event type {type_name!r} is not registered with aggregate {aggregate!r}"
    if current is None:
        return UnknownEventType(
            f"{start} (known: {known}); register the event name {event_name!r}, keeping an "
            f"event type registered for as long as the journal holds events of it (one that "
            f"decide no longer returns, too)"
        )
    # Only a version as this code writes it (1, 2, ...): another text ("03", "0", a
    # superscript digit) names no version that an upcaster or a later release would read.
    if not (version_text.isascii() and version_text.isdigit() and version_text[0] != "0"):
        return UnknownEventType(
            f"{start}: its version {version_text!r:.40} is not one that eventfold writes (a "
            f"whole number from 1, without leading zeros), and no registration reads it "
            f"(known: {known}); the event was written by other code or changed since. The "
            f"journal's read(stream_id) gives it as stored"
        )
    version = int(version_text)
    if version > current:
        return UnknownEventType(
            f"{start}: it is version {version} of event {event_name!r}, and this code "
            f"registers version {current}, so it was written by a later version of the "
            f"application; an event is never read as an older schema. Run that later version "
            f"(or one that registers version {version} or above, with its class and upcasters)"
        )
    versions = str(version) if version == current - 1 else f"{version} to {current - 1}"
    return UnknownEventType(
        f"{start}: it is version {version} of event {event_name!r}, registered at version "
        f"{current}, and no chain of upcasters leads from it (known: {known}); give "
        f"EventType(..., version={current}) an upcaster for each of versions {versions} "
        f"(upcasters[n] reads version n and answers version n + 1)"
    )
