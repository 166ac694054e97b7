"""Explainer service: SHAP explanations of stored models."""
