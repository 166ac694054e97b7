"""`automl explanation show`: SHAP feature importance of an experiment's best model."""

from __future__ import annotations

import argparse

from automl.cli import render
from automl.cli.client import Context, resource_name
from automl.v1 import experiment_pb2, explainer_pb2

PER_CLASS_FEATURES = 3


def register(subparsers, common: argparse.ArgumentParser) -> None:
    """Add the `explanation` command and its subcommands."""
    explanation = subparsers.add_parser("explanation", help="read the SHAP explanation of the best model")
    commands = explanation.add_subparsers(dest="action", required=True, metavar="ACTION")

    show = commands.add_parser("show", parents=[common], help="show feature importance overall and per class")
    show.add_argument("experiment", metavar="EXPERIMENT")
    show.add_argument("--top", type=int, default=10, help="features to list overall (default 10)")
    show.set_defaults(func=show_explanation)


def show_explanation(args, ctx: Context) -> int:
    """Print the explainer, expected values and the top features overall and per class."""
    parent = resource_name(args.experiment, "experiments")
    explanation = ctx.experiments.GetExplanation(experiment_pb2.GetExplanationRequest(parent=parent))
    print(explanation_text(explanation, args.top))
    return 0


def explanation_text(explanation: explainer_pb2.Explanation, top: int = 10) -> str:
    """Format an explanation: explainer, expected values, top features overall and top 3 per class."""
    labels = list(explanation.class_labels)
    if labels and len(labels) == len(explanation.expected_values):
        expected = ", ".join(f"{label}: {value:.4f}" for label, value in zip(labels, explanation.expected_values))
    else:
        expected = ", ".join(f"{value:.4f}" for value in explanation.expected_values) or "-"
    pairs = [
        ("Explainer", explanation.explainer),
        ("Model", explanation.model_uri),
        ("Data", f"{explanation.dataset_uri} ({explanation.row_count} rows explained)"),
        ("Expected values", expected),
        ("SHAP values", explanation.shap_values_uri),
    ]
    text = render.format_fields(pairs)

    overall = list(explanation.overall_importance)[:top]
    rows = [(rank, item.feature, f"{item.importance:.4f}") for rank, item in enumerate(overall, start=1)]
    text += (f"\n\nTop {len(overall)} of {len(explanation.feature_names)} features (mean |SHAP value|):\n"
             + render.format_table(("RANK", "FEATURE", "IMPORTANCE"), rows, right=(0, 2)))

    if explanation.per_class_importance:
        rows = []
        for class_importance in explanation.per_class_importance:
            features = ", ".join(f"{item.feature} ({item.importance:.4f})"
                                 for item in list(class_importance.features)[:PER_CLASS_FEATURES])
            rows.append((class_importance.class_label, features))
        text += (f"\n\nTop {PER_CLASS_FEATURES} features per class:\n"
                 + render.format_table(("CLASS", "FEATURES"), rows))
    return text
