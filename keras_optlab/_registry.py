"""The name table behind the optimizer and schedule registries.

Entries are frozen records with at least `name`, `family` and
`keras_builtin`, and optionally `aliases` (other names of the same entry,
such as the class name TensorFlow Addons used); names are lowercase and
looked up case-insensitively. Aliases resolve but are not listed.
"""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

Entry = TypeVar("Entry")


class Registry(Generic[Entry]):
    """Names to entries, in registration order.

    Args:
        kind: What an entry is, for messages: `"optimizer"`, `"schedule"`.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}

    def add(self, entry: Entry) -> Entry:
        """Adds `entry`; neither its name nor its aliases may be taken."""
        aliases = tuple(getattr(entry, "aliases", ()))
        for name in (entry.name, *aliases):
            if name in self._entries or name in self._aliases:
                article = "An" if self.kind[0] in "aeiou" else "A"
                raise ValueError(
                    f"{article} {self.kind} named {name!r} is already registered."
                )
        if len(set(aliases)) != len(aliases) or entry.name in aliases:
            raise ValueError(f"The aliases of {entry.name!r} repeat a name: {aliases}.")
        self._entries[entry.name] = entry
        for alias in aliases:
            self._aliases[alias] = entry.name
        return entry

    def names(self, family: str | None = None, keras_builtin: bool | None = None) -> list[str]:
        """Registered names, optionally only one family or origin."""
        return [
            entry.name
            for entry in self._entries.values()
            if (family is None or entry.family == family)
            and (keras_builtin is None or entry.keras_builtin == keras_builtin)
        ]

    def lookup(self, name: str) -> Entry:
        """The entry of `name`; `ValueError` listing the names if unknown."""
        if not isinstance(name, str):
            raise TypeError(f"Argument `name` must be a string. Received: name={name!r}")
        key = name.lower()
        key = self._aliases.get(key, key)
        if key not in self._entries:
            known = ", ".join(self._entries)
            raise ValueError(f"Unknown {self.kind} name {name!r}. Known names: {known}.")
        return self._entries[key]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())
