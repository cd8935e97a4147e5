"""Distillation's teachers: a student's teacher built from a run, a cache or a Q artifact (:mod:`.teachers`), and
the teacher cache: its format (:mod:`.cache`), building (:mod:`.cachebuild`) and replay (:mod:`.replay`)."""
