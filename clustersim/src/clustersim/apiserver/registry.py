"""The table of served resource types: built-in kinds plus whatever the CRDs add."""

from __future__ import annotations

from clustersim.apiserver.kinds import ResourceType, builtin_types, version_priority

BUILTIN_GROUP_ORDER = ("", "apps", "events.k8s.io", "authentication.k8s.io",
                       "authorization.k8s.io", "rbac.authorization.k8s.io",
                       "apiextensions.k8s.io", "coordination.k8s.io", "discovery.k8s.io")


class TypeRegistry:
    """Lookup of served types by URL (group, version, plural) and by (group, version, kind)."""

    def __init__(self) -> None:
        self._builtin = builtin_types()
        self._custom: dict[str, list[ResourceType]] = {}
        self.generation = 0
        self._rebuild()

    def _rebuild(self) -> None:
        self._by_resource: dict[tuple[str, str, str], ResourceType] = {}
        self._by_kind: dict[tuple[str, str, str], ResourceType] = {}
        every = list(self._builtin)
        for types in self._custom.values():
            every.extend(types)
        for resource_type in every:
            key = (resource_type.group, resource_type.version, resource_type.plural)
            self._by_resource.setdefault(key, resource_type)
            self._by_kind.setdefault(
                (resource_type.group, resource_type.version, resource_type.kind), resource_type)
        self._by_storage: dict[tuple[str, str], ResourceType] = {}
        for resource_type in every:
            if resource_type.version == resource_type.storage_version and \
                    resource_type.storage_group is None:
                self._by_storage.setdefault(resource_type.storage_key, resource_type)
        self._all = every
        # discovery and OpenAPI documents are cached per generation
        self.generation += 1

    def set_custom(self, crd_name: str, types: list[ResourceType]) -> None:
        if types:
            self._custom[crd_name] = types
        else:
            self._custom.pop(crd_name, None)
        self._rebuild()

    def remove_custom(self, crd_name: str) -> None:
        self._custom.pop(crd_name, None)
        self._rebuild()

    def custom(self, crd_name: str) -> list[ResourceType]:
        return list(self._custom.get(crd_name, ()))

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_resource.get((group, version, plural))

    def by_kind(self, group: str, version: str, kind: str) -> ResourceType | None:
        return self._by_kind.get((group, version, kind))

    def by_storage_key(self, key: tuple[str, str]) -> ResourceType | None:
        """The type that serves objects of a storage key in their storage version."""
        return self._by_storage.get(key)

    def by_api_version(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        return self.by_kind(group, version, kind)

    def any_version(self, group: str, kind: str) -> ResourceType | None:
        """A served type of this group and kind in its preferred version."""
        candidates = [t for t in self._all if t.group == group and t.kind == kind]
        candidates.sort(key=lambda t: version_priority(t.version))
        return candidates[0] if candidates else None

    def all_types(self) -> list[ResourceType]:
        return list(self._all)

    def groups(self) -> list[tuple[str, list[str]]]:
        """(group, versions in preference order) for every served group, in discovery order."""
        versions: dict[str, set[str]] = {}
        for resource_type in self._all:
            versions.setdefault(resource_type.group, set()).add(resource_type.version)
        builtin = [g for g in BUILTIN_GROUP_ORDER if g in versions]
        custom = sorted(g for g in versions if g not in BUILTIN_GROUP_ORDER)
        return [(g, sorted(versions[g], key=version_priority)) for g in builtin + custom]

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self._all if t.group == group and t.version == version]
