"""kd-ref: BERT knowledge distillation with actor-critic knowledge selection."""
