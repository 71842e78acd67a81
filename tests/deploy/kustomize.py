"""Just enough kustomize to render deploy/ in a test, with no kustomize binary: what our
kustomizations use and nothing more, refusing anything else so a new feature cannot be silently skipped.

Supported: ``resources`` (files, and folders holding a kustomization), ``components`` (folders holding a
``Component``), ``patches`` (strategic-merge patches from ``path``, matched by kind/name/namespace;
lists of mappings with a ``name`` merge by name, ``$patch: delete`` removes an item), ``images``
(``name`` → ``newName:newTag``), ``labels`` (``pairs`` on ``metadata.labels``; ``includeSelectors``
false). When ``kubectl`` is installed, tests compare this renderer's output with ``kubectl kustomize``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]
KNOWN_KEYS = {"apiVersion", "kind", "resources", "components", "patches", "images", "labels"}


class KustomizeError(AssertionError):
    """The kustomization uses something this renderer does not implement, or is wrong."""


def _load(path: Path) -> list[Doc]:
    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _kustomization(folder: Path) -> Doc:
    [k] = _load(folder / "kustomization.yaml")
    unknown = set(k) - KNOWN_KEYS
    if unknown:
        raise KustomizeError(f"{folder}: unsupported kustomization keys {sorted(unknown)}")
    return k


def key(doc: Doc) -> tuple[str, str, str]:
    meta = doc.get("metadata") or {}
    return doc["kind"], meta.get("namespace", ""), meta["name"]


def merge(base: Any, patch: Any) -> Any:
    """A strategic merge as kustomize does it for our patches."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for k, v in patch.items():
            out[k] = merge(out[k], v) if k in out else copy.deepcopy(v)
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in patch)
    ):
        out_list = copy.deepcopy(base)
        for item in patch:
            index = next(
                (i for i, b in enumerate(out_list) if isinstance(b, dict) and b.get("name") == item["name"]),
                None,
            )
            if item.get("$patch") == "delete":
                if index is None:
                    raise KustomizeError(f"patch deletes {item['name']!r}, which the target lacks")
                del out_list[index]
            elif index is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[index] = merge(out_list[index], item)
        return out_list
    return copy.deepcopy(patch)


def _apply_patches(docs: list[Doc], folder: Path, patches: list[Doc]) -> list[Doc]:
    for entry in patches:
        if set(entry) != {"path"}:
            raise KustomizeError(f"{folder}: only `patches: - path:` is supported, got {sorted(entry)}")
        for patch in _load(folder / entry["path"]):
            targets = [i for i, d in enumerate(docs) if key(d) == key(patch)]
            if len(targets) != 1:
                raise KustomizeError(
                    f"{folder}/{entry['path']}: patch target {key(patch)} matches {len(targets)}"
                )
            docs[targets[0]] = merge(docs[targets[0]], patch)
    return docs


def _images(docs: list[Doc], images: list[Doc]) -> None:
    for doc in docs:
        pod = (doc.get("spec") or {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name = (
                container["image"].split("@")[0].rsplit(":", 1)[0]
                if ":" in container["image"]
                else container["image"]
            )
            for image in images:
                if image["name"] == name:
                    container["image"] = f"{image.get('newName', name)}:{image['newTag']}"


def _labels(docs: list[Doc], labels: list[Doc]) -> None:
    for entry in labels:
        if entry.get("includeSelectors", False) or entry.get("includeTemplates", False):
            raise KustomizeError("only labels with includeSelectors: false are supported")
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])


def render(folder: Path, extra_components: tuple[Path, ...] = ()) -> list[Doc]:
    """The objects ``kustomize build folder`` prints (in no particular order), with
    ``extra_components`` added to the folder's own ``components``."""
    k = _kustomization(folder)
    if k.get("kind", "Kustomization") not in ("Kustomization", "Component"):
        raise KustomizeError(f"{folder}: kind {k.get('kind')}")
    docs: list[Doc] = []
    for resource in k.get("resources") or []:
        path = (folder / resource).resolve()
        docs += render(path) if path.is_dir() else _load(path)
    seen = [key(d) for d in docs]
    if len(seen) != len(set(seen)):
        raise KustomizeError(f"{folder}: an object appears twice")
    components = [(folder / c).resolve() for c in k.get("components") or []] + list(extra_components)
    for component in components:
        ck = _kustomization(component)
        if ck.get("kind") != "Component":
            raise KustomizeError(f"{component} is not a Component")
        for resource in ck.get("resources") or []:
            docs += _load(component / resource)
        docs = _apply_patches(docs, component, ck.get("patches") or [])
    docs = _apply_patches(docs, folder, k.get("patches") or [])
    _images(docs, k.get("images") or [])
    _labels(docs, k.get("labels") or [])
    return docs
