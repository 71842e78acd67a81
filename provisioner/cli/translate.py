"""``zonal translate pv|storageclass FILE|-``: in-tree EBS objects as zonal CSI objects, YAML in and out.

Why it exists: the file and YAML handling around :mod:`provisioner.translate`, which stays pure. Reads
one or more YAML documents (``kind: List`` and ``*List`` documents are translated item by item), prints
the translated documents. ``--reverse`` goes from CSI back to in-tree (for rollback and round trips).

What it must not do: talk to a cluster or change files; every input problem becomes one
:class:`~provisioner.cli.CliError` line (exit status 2), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from provisioner.cli import CliError
from provisioner.config import DEFAULT_DRIVER_NAME, validate_driver_name
from provisioner.translate import (
    TranslationError,
    pv_to_csi,
    pv_to_in_tree,
    storageclass_to_csi,
    storageclass_to_in_tree,
)

Translator = Callable[[Mapping[str, Any], str], dict[str, Any]]

# sub-command → (kind, in-tree → CSI, CSI → in-tree)
_COMMANDS: dict[str, tuple[str, Translator, Translator]] = {
    "pv": ("PersistentVolume", pv_to_csi, pv_to_in_tree),
    "storageclass": ("StorageClass", storageclass_to_csi, storageclass_to_in_tree),
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "translate",
        help="turn in-tree kubernetes.io/aws-ebs PVs and StorageClasses into zonal CSI ones",
        description="Translate in-tree kubernetes.io/aws-ebs objects into their CSI equivalents for zonal, "
        "following Kubernetes' csi-translation-lib (zones become nodeAffinity/allowedTopologies on "
        "topology.kubernetes.io/zone).",
    )
    kinds = parser.add_subparsers(dest="translate_kind", metavar="KIND")
    kinds.required = True
    for name, aliases in (("pv", ["persistentvolume"]), ("storageclass", ["sc"])):
        kind = _COMMANDS[name][0]
        sub = kinds.add_parser(name, aliases=aliases, help=f"translate {kind} objects")
        sub.add_argument("file", metavar="FILE", help="YAML file with one or more documents, or - for stdin")
        sub.add_argument(
            "--driver-name",
            default=DEFAULT_DRIVER_NAME,
            help=f"CSI driver name to translate to (default {DEFAULT_DRIVER_NAME})",
        )
        sub.add_argument("--reverse", action="store_true", help="translate CSI objects back to in-tree")
        sub.set_defaults(func=run, translate_command=name)


def run(args: argparse.Namespace) -> int:
    try:
        driver_name = validate_driver_name(args.driver_name)
    except ValueError as e:
        raise CliError(str(e)) from e
    kind, to_csi, to_in_tree = _COMMANDS[args.translate_command]
    translate = to_in_tree if args.reverse else to_csi
    documents = _load(args.file)
    out: list[Any] = []
    for index, doc in enumerate(documents, start=1):
        try:
            out.append(_translate_document(doc, kind, translate, driver_name))
        except TranslationError as e:
            raise CliError(f"{_name(args.file)}: document {index}: {e}") from e
    sys.stdout.write(yaml.safe_dump_all(out, sort_keys=False, default_flow_style=False))
    return 0


def _translate_document(doc: Any, kind: str, translate: Translator, driver_name: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise TranslationError(f"expected a {kind} mapping, got {type(doc).__name__}")
    doc_kind = doc.get("kind")
    if isinstance(doc_kind, str) and doc_kind.endswith("List") and "items" in doc:
        items = doc["items"]
        if not isinstance(items, list):
            raise TranslationError("items must be a list")
        result = dict(doc)
        translated: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            try:
                translated.append(translate(_with_kind(item, kind), driver_name))
            except TranslationError as e:
                raise TranslationError(f"items[{i}]: {e}") from e
        result["items"] = translated
        return result
    return translate(doc, driver_name)


def _with_kind(item: Any, kind: str) -> Any:
    """``kubectl get -o yaml`` lists may omit each item's kind in a typed list; fill it in."""
    if isinstance(item, dict) and "kind" not in item:
        return {"kind": kind, **item}
    return item


def _name(path: str) -> str:
    return "<stdin>" if path == "-" else path


def _load(path: str) -> list[Any]:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise CliError(f"cannot read {path}: not UTF-8 text") from e
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise CliError(f"{_name(path)}: not valid YAML: {_yaml_problem(e)}") from e
    if not documents:
        raise CliError(f"{_name(path)}: no YAML documents")
    return documents


def _yaml_problem(e: yaml.YAMLError) -> str:
    if isinstance(e, yaml.MarkedYAMLError) and e.problem_mark is not None:
        return (
            f"{e.problem or e.context} (line {e.problem_mark.line + 1}, column {e.problem_mark.column + 1})"
        )
    return str(e).replace("\n", " ")


__all__ = ["register", "run"]
