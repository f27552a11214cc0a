"""Data: GLUE TSV files to fixed-shape batches (tokenizer, glue, splits, batching), the metrics they
are scored with, the synthetic task of --demo and the GLUE download."""
