"""gRPC servicer of ExplainerService: converts messages and calls `ModelExplainer`."""

from __future__ import annotations

from automl.common.catalog import TASK_NAMES
from automl.common.errors import grpc_errors
from automl.v1 import explainer_pb2, explainer_pb2_grpc
from services.explainer.explain import ExplainRequest, Explanation, FeatureImportance, ModelExplainer

# Share of the caller's remaining deadline the permutation explainer may use;
# the rest covers loading and storing.
DEADLINE_SHARE = 0.5


class ExplainerServicer(explainer_pb2_grpc.ExplainerServiceServicer):
    """Serves ExplainModel on top of a `ModelExplainer`."""

    def __init__(self, explainer: ModelExplainer):
        self.explainer = explainer

    @grpc_errors
    def ExplainModel(self, request: explainer_pb2.ExplainModelRequest, context) -> explainer_pb2.Explanation:
        remaining = context.time_remaining()
        explanation = self.explainer.explain(
            ExplainRequest(
                model_uri=request.model_uri,
                dataset_uri=request.dataset.uri,
                label_column=request.dataset.label_column,
                task=TASK_NAMES.get(request.task, ""),
                output_uri=request.output_uri,
                max_rows=request.max_rows,
                background_rows=request.background_rows,
                seed=request.seed,
            ),
            time_budget=None if remaining is None else remaining * DEADLINE_SHARE,
        )
        return to_message(explanation)


def to_message(explanation: Explanation) -> explainer_pb2.Explanation:
    """Convert an `Explanation` to its protobuf message."""
    return explainer_pb2.Explanation(
        explainer=explanation.explainer,
        model_uri=explanation.model_uri,
        dataset_uri=explanation.dataset_uri,
        feature_names=explanation.feature_names,
        class_labels=explanation.class_labels,
        expected_values=explanation.expected_values,
        overall_importance=_importance_messages(explanation.overall_importance),
        per_class_importance=[
            explainer_pb2.ClassImportance(class_label=entry.class_label,
                                          features=_importance_messages(entry.features))
            for entry in explanation.per_class_importance
        ],
        shap_values_uri=explanation.shap_values_uri,
        row_count=explanation.row_count,
    )


def _importance_messages(entries: list[FeatureImportance]) -> list[explainer_pb2.FeatureImportance]:
    return [explainer_pb2.FeatureImportance(feature=entry.feature, importance=entry.importance) for entry in entries]
