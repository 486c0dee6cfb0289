"""BentoML service for signflow: ``bentoml serve serving.service:Signflow`` (see docs/serving.md)."""
