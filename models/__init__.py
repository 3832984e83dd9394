"""Fine-tuning recipes and evaluation for the NLU heads (intent, entities, sentiment, answer matching)."""
