"""What a run needs beside the method: Hugging Face checkpoints in and out, run folders and their
files, locks, checkpoints and resume, progress lines, the report picture, torchrun, torch.compile,
the teacher stage of run.py, and one-line errors. None of it changes what is computed."""
