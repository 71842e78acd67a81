"""The tag template evaluator: aws-ebs-csi-driver's documented subset of Go templates, and nothing more."""

from __future__ import annotations

import pytest

from provisioner import params as P
from provisioner.errors import InvalidArgument
from provisioner.tagtemplate import MAX_DEPTH, Template, TemplateError, render

FIELDS = {"PVCName": "ebs-claim", "PVCNamespace": "ns-prod-abcdef", "PVName": "pvc-0123"}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("plain value", "plain value"),
        ("", ""),
        ("{{ .PVCName }}", "ebs-claim"),
        ("{{.PVCNamespace}}/{{ .PVName }}", "ns-prod-abcdef/pvc-0123"),
        # docs/tagging.md, Example 3.
        ('{{ .PVCNamespace | contains "prod" }}', "true"),
        ('{{ .PVCNamespace | contains "dev" }}', "false"),
        ('{{ .PVCNamespace | field "-" 2 | toUpper }}', "ABCDEF"),
        ("{{ .PVCNamespace | toUpper | toLower }}", "ns-prod-abcdef"),
        ("{{ .PVCNamespace | substring 0 7 }}", "ns-prod"),
        ("{{ .PVCNamespace | substring -1 2 }}", "ns"),  # Go's: start < 0 → [:end]
        ("{{ .PVCNamespace | substring 8 -1 }}", "abcdef"),  # end < 0 → [start:]
        ("{{ .PVCNamespace | substring 8 99 }}", "abcdef"),  # end past the end → [start:]
        ('{{ field "-" 1 .PVCNamespace }}', "prod"),  # arguments instead of a pipe
        ('{{ toUpper (field "-" 0 .PVCNamespace) }}', "NS"),
        ('{{ "}}" }}', "}}"),  # a quoted "}}" does not end the action
        ("{{ `raw \\n` }}", "raw \\n"),
        ('{{ "tab\\tquote\\"" }}', 'tab\tquote"'),
        ("a {{- .PVName -}} b", "apvc-0123b"),  # trim markers
        ("{{/* a comment */}}x", "x"),
        ("{{ 42 }} {{ true }}", "42 true"),
    ],
)
def test_renders_like_aws_ebs_csi_driver(template: str, expected: str) -> None:
    assert render(template, FIELDS) == expected


def test_empty_fields_render_empty() -> None:
    # aws-ebs-csi-driver: without --extra-create-metadata the fields are empty, not an error.
    assert render("{{ .PVCName }}-{{ .PVName }}", {"PVCName": "", "PVName": ""}) == "-"


@pytest.mark.parametrize(
    ("template", "complaint"),
    [
        ("{{ .PVCName }", "unclosed action"),
        ("{{ .Owner }}", "unknown field .Owner"),
        ("{{ .PVCName | html }}", "function 'html' is not defined"),
        ("{{ js .PVCName }}", "function 'js' is not defined"),
        ("{{ call .PVCName }}", "function 'call' is not defined"),
        ('{{ printf "%s" .PVCName }}', "function 'printf' is not defined"),
        ("{{ index .PVCName 1 }}", "function 'index' is not defined"),
        ('{{ .PVCName | field "-" 5 }}', "cannot take word 5"),
        ('{{ .PVCName | field "-" -1 }}', "cannot take word -1"),
        ('{{ field "-" "1" .PVCName }}', "argument 2 must be an integer"),
        ("{{ toUpper 3 }}", "argument 1 must be a string"),
        ("{{ .PVCName | substring 5 2 }}", "start 5 is after end 2"),
        ("{{ toUpper }}", "takes 1 arguments, got 0"),
        ("{{ .PVCName .PVName }}", "only a function takes arguments"),
        ("{{ .PVCName | .PVName }}", "only be piped into a function"),
        ("{{ }}", "empty action"),
        ('{{ "\\q" }}', "unsupported escape"),
        ("{{ .PVCName ! }}", "unexpected '!'"),
        ("{{ (.PVCName }}", "unclosed '('"),
        ("{{ 99999999999 }}", "out of range"),
        ("{{ toUpper toLower }}", "used as an argument"),
        ("{{/* open }}", "unclosed comment"),
    ],
)
def test_refuses_what_it_cannot_evaluate(template: str, complaint: str) -> None:
    with pytest.raises(TemplateError, match=complaint.replace("(", r"\(")):
        render(template, FIELDS)


def test_nesting_and_output_are_bounded() -> None:
    deep = "{{ " + "(" * (MAX_DEPTH + 2) + ".PVCName" + ")" * (MAX_DEPTH + 2) + " }}"
    with pytest.raises(TemplateError, match="nested deeper"):
        render(deep, FIELDS)
    with pytest.raises(TemplateError, match="longer than 20"):
        render("{{ .PVCNamespace }}{{ .PVCNamespace }}", FIELDS, max_output=20)


def test_substring_never_splits_a_character() -> None:
    with pytest.raises(TemplateError, match="multi-byte"):
        render("{{ .PVCName | substring 0 1 }}", {"PVCName": "é-claim"})


def test_fields_lists_what_a_template_names() -> None:
    template = Template.parse('x={{ .A | field "-" 1 }} {{ toUpper (toLower .B) }}')
    assert template.fields() == {"A", "B"}


def test_a_tag_spec_error_names_the_parameter() -> None:
    with pytest.raises(InvalidArgument, match="tagSpecification_7") as caught:
        P.parse_parameters({"tagSpecification_7": "owner={{ .Owner }}"})
    assert "unknown field .Owner" in caught.value.message
    # The rendered value is checked like a plain one (EC2's 256-character limit).
    with pytest.raises(InvalidArgument, match="tagSpecification_1"):
        P.parse_parameters(
            {"tagSpecification_1": "k={{ .PVCName }}", "csi.storage.k8s.io/pvc/name": "x" * 300}
        )


def test_no_code_runs_from_a_template() -> None:
    # Python-looking input is text or a parse error, never evaluated.
    assert render("__import__('os').system('true')", {}) == "__import__('os').system('true')"
    with pytest.raises(TemplateError):
        render("{{ __import__ }}", {})
    with pytest.raises(TemplateError, match=r"unknown field \.__class__"):
        render("{{ .__class__ }}", FIELDS)
